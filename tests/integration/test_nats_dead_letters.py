"""NATS: distinct messages that share a CloudEvents id each get their dead letter
(issue 13, item 5: the dead-letter publish reused the message id as ``Nats-Msg-Id``,
and JetStream dropped the second and third as duplicates)."""

from __future__ import annotations

import nats
import pytest
from tests.brokers import NATS, cleanup_streams, require, unique

from seawall import Command, Service, System
from seawall.testing._conformance import Inbox
from seawall.transports.nats import NatsTransport

pytestmark = pytest.mark.integration


class Ship(Command, frozen=True):
    type_name = "nats_dlq.Ship"

    order_id: str


async def test_three_malformed_messages_with_one_id_give_three_dead_letters() -> None:
    url = require(NATS)
    name = unique("dlq")
    service = Service(name)

    @service.command
    async def ship(cmd: Ship) -> None:
        raise AssertionError("a malformed message reached the handler")

    plain = await nats.connect(url)
    js = plain.jetstream()
    try:
        async with cleanup_streams() as doomed, System(service, transport=url) as system:
            transport = system.transport
            assert isinstance(transport, NatsTransport)
            doomed.update(s.name for s in transport._streams.values())
            for body in (b'{"order_id": 1}', b'{"order_id": [2]}', b"not json"):
                await js.publish(
                    f"seawall.{name}.0",
                    body,
                    headers={
                        "ce-id": "the-same-id",
                        "ce-type": Ship.type_name,
                        "ce-source": "a-careless-producer",
                        "ce-specversion": "1.0",
                        "content-type": "application/json",
                    },
                )
            inspector = await transport.subscribe(f"{name}.dlq", group="inspector")
            doomed.update(s.name for s in transport._streams.values())
            async with Inbox(inspector, patience=10.0) as reader:
                dead = await reader.collect(3)
                for delivery in dead:
                    await inspector.ack(delivery)
            await inspector.close()
        assert sorted(d.message.data for d in dead) == sorted(
            [b'{"order_id": 1}', b'{"order_id": [2]}', b"not json"]
        )
        assert {d.message.id for d in dead} == {"the-same-id"}
        assert {d.message.headers["seawall-dlq-reason"] for d in dead} == {"decode-error"}
    finally:
        await plain.close()
