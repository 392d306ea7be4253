"""Names and arguments of the RabbitMQ objects a seawall channel is made of (sans-IO).

Every name starts with ``seawall.`` and carries channel and group names made
name-safe by :func:`seawall._transport.assignment.token`, so any valid channel name maps
to legal, distinct AMQP names. :mod:`seawall.transports.rabbitmq` gives the
design; this module only spells it out, so it is tested without a broker.
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass
from typing import Any

from ..._transport.assignment import token

__all__ = [
    "ATTEMPT",
    "BROKER_HEADERS",
    "MAX_DELAY",
    "PREFIX",
    "Layout",
    "delay_step",
    "delay_names",
    "delay_queue_arguments",
    "channel_queue_arguments",
    "expires_ms",
    "group_queue_arguments",
    "inbox_queue",
    "max_length",
]

PREFIX = "seawall."
ATTEMPT = "seawall-attempt"
"""Header: the attempt number a republished (delayed) message starts from."""
BROKER_HEADERS = frozenset(
    {
        ATTEMPT,
        "x-delivery-count",
        "x-death",
        "x-first-death-exchange",
        "x-first-death-queue",
        "x-first-death-reason",
        "x-last-death-exchange",
        "x-last-death-queue",
        "x-last-death-reason",
    }
)
"""Headers the broker or this adapter adds; not part of the message."""

# Delays are rounded *up* to the next step of this ladder (ms), so a redelivery never
# comes early and the broker holds a bounded number of delay queues: the E12 series,
# twelve steps per decade, each at most 1.25x the one below.
_MANTISSAS = (10, 12, 15, 18, 22, 27, 33, 39, 47, 56, 68, 82)
_LADDER: tuple[int, ...] = tuple(m * 10**e for e in range(7) for m in _MANTISSAS)  # to 82e6 ms


MAX_DELAY = _LADDER[-1] / 1000
"""Longest delay the ladder holds, in seconds (about 22.8 hours)."""


def delay_step(seconds: float) -> int:
    """The delay queue (in ms) for a delay of ``seconds``: the next ladder step up."""
    ms = max(1, math.ceil(seconds * 1000))
    index = bisect.bisect_left(_LADDER, ms)
    return _LADDER[min(index, len(_LADDER) - 1)]


def delay_names(step_ms: int) -> str:
    """Name of both the fanout exchange and the queue holding messages for ``step_ms``."""
    return f"{PREFIX}delay.{step_ms}ms"


def max_length(max_messages: int) -> int:
    """``x-max-length`` bounding a quorum queue at ``max_messages`` ready messages.

    A quorum queue refuses a publish only once it is already *over* its limit
    (it takes one more than ``x-max-length``), so the argument is one less.
    """
    return max(0, max_messages - 1)


def channel_queue_arguments(max_messages: int, priorities: int = 1) -> dict[str, Any]:
    """Arguments every bounded, durable queue of a channel shares.

    Quorum queues, except on a channel with priority levels: quorum queues have
    none (before RabbitMQ 4), so those are classic queues with ``x-max-priority``,
    which store persistent messages on disk before confirming them as well, and
    which honour ``x-max-length`` exactly.
    """
    if priorities > 1:
        return {
            "x-queue-type": "classic",
            "x-max-priority": priorities - 1,
            "x-max-length": max_messages,
            "x-overflow": "reject-publish",
        }
    return {
        "x-queue-type": "quorum",
        "x-max-length": max_length(max_messages),
        "x-overflow": "reject-publish",
    }


def group_queue_arguments(
    max_messages: int, *, partitioned: bool, priorities: int = 1, expiry: float | None = None
) -> dict[str, Any]:
    """A group's partition queue: bounded; single active consumer if partitioned; deleted
    by RabbitMQ once unused (no consumer, no get, no redeclaration) for ``expiry`` seconds."""
    arguments = channel_queue_arguments(max_messages, priorities)
    if partitioned:
        arguments["x-single-active-consumer"] = True
    if expiry is not None:
        arguments["x-expires"] = expires_ms(expiry)
    return arguments


def expires_ms(seconds: float) -> int:
    """``x-expires`` for ``seconds``: whole milliseconds, rounded up, at least 1."""
    if not seconds > 0:
        raise ValueError(f"idle_expiry must be more than 0 seconds, got {seconds}")
    return max(1, math.ceil(seconds * 1000))


def delay_queue_arguments(step_ms: int, target: str = "") -> dict[str, Any]:
    """A delay queue: every message expires after ``step_ms`` and is dead-lettered
    through the exchange ``target``, under the routing key it was published with, at
    least once (a full target queue makes it wait, not drop). With the default
    exchange as target, that key names the queue the message goes back to; with a
    channel's exchange, it is the partition."""
    return {
        "x-queue-type": "quorum",
        "x-message-ttl": step_ms,
        "x-dead-letter-exchange": target,
        "x-dead-letter-strategy": "at-least-once",
        "x-overflow": "reject-publish",
    }


def inbox_queue(channel: str) -> str:
    """The one queue of an ephemeral channel (a reply inbox)."""
    return f"{PREFIX}{token(channel)}"


@dataclass(frozen=True, slots=True)
class Layout:
    """A durable channel's objects: an exchange routing by partition number to one
    queue per (group, partition), and an unclaimed queue for messages no group takes."""

    channel: str
    partitions: int
    priorities: int = 1

    @property
    def tok(self) -> str:
        return token(self.channel)

    @property
    def exchange(self) -> str:
        """Direct exchange; routing key = partition number."""
        return f"{PREFIX}{self.tok}"

    @property
    def unclaimed(self) -> str:
        """Fanout alternate exchange and the queue behind it (same name)."""
        return f"{PREFIX}{self.tok}.unclaimed"

    @property
    def meta(self) -> str:
        """Queue holding the one message that records the layout (partition count)."""
        return f"{PREFIX}{self.tok}.layout"

    @property
    def groups(self) -> str:
        """Queue holding one message per group, its name: how deleting the channel finds
        the groups' queues (AMQP cannot list queues)."""
        return f"{PREFIX}{self.tok}.groups"

    def queue(self, group: str, partition: int) -> str:
        """The queue of ``group``'s ``partition``."""
        return f"{PREFIX}{self.tok}.g.{token(group)}.{partition}"

    def scheduled(self, step_ms: int) -> str:
        """Fanout exchange and queue holding messages published with ``not_before``
        for ``step_ms``, dead-lettered into this channel's exchange."""
        return f"{PREFIX}{self.tok}.delay.{step_ms}ms"

    def members(self, group: str) -> str:
        """Fanout exchange the members of a partitioned group announce themselves on."""
        return f"{PREFIX}{self.tok}.g.{token(group)}.members"

    def every_queue(self, groups: list[str]) -> list[str]:
        """Every queue of this channel for ``groups`` (cleanup)."""
        queues = [self.unclaimed, self.meta, self.groups]
        queues += [self.queue(g, p) for g in groups for p in range(self.partitions)]
        return queues

    def every_delay(self) -> list[str]:
        """Every delayed-delivery exchange and queue name this channel may have."""
        return [self.scheduled(step) for step in _LADDER]
