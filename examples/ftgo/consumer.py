"""Consumer service: says whether a consumer may order (request/response)."""

from __future__ import annotations

import os

from seawall import Service

from .messages import ConsumerVerified, ValidateConsumer
from .names import channel

BLOCKED = frozenset({"c-13"})
"""Consumers whose account is closed: their orders are rejected at the first step
(``FTGO_BLOCKED``, comma separated, adds more)."""


def service() -> Service:
    consumer = Service(channel("consumer"), expired="drop")  # the saga asks again
    blocked = BLOCKED | set(filter(None, os.environ.get("FTGO_BLOCKED", "").split(",")))

    @consumer.command
    async def validate(cmd: ValidateConsumer) -> ConsumerVerified:
        known = cmd.consumer_id.startswith("c-")
        return ConsumerVerified(
            consumer_id=cmd.consumer_id, ok=known and cmd.consumer_id not in blocked
        )

    return consumer
