"""Interoperability with FastStream on NATS JetStream, a framework seawall did not write.

A FastStream subscriber reads a seawall event straight off its channel's
stream (the CloudEvents attributes from the NATS headers, the JSON payload as
the body), and a seawall service handles a message that a FastStream publisher
sent with CloudEvents headers. FastStream is a dev dependency only.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest
from tests.brokers import NATS, cleanup_streams, require, unique

from seawall import Event, Service, System
from seawall.testing._delivery import wait_until
from seawall.transports.nats import NatsTransport

faststream_nats = pytest.importorskip("faststream.nats", reason="pip install 'faststream[nats]'")

pytestmark = pytest.mark.integration


class ParcelShipped(Event):
    type_name = "interop.ParcelShipped"
    type_version = "1.2.0"

    order_id: str
    parcels: int


def _names(transport: NatsTransport) -> set[str]:
    return {stream.name for stream in transport._streams.values()}


async def test_a_faststream_subscriber_reads_a_seawall_event_and_its_attributes() -> None:
    url = require(NATS)
    name = unique("fsout")
    received: asyncio.Future[tuple[dict[str, Any], dict[str, Any]]] = (
        asyncio.get_running_loop().create_future()
    )
    broker = faststream_nats.NatsBroker(url)

    @broker.subscriber(
        f"seawall.{name}_2eevents.0",
        stream=faststream_nats.JStream(name=f"SEAWALL_{name}_2eevents", declare=False),
        durable="faststream",
        pull_sub=faststream_nats.PullSub(timeout=1.0),
    )
    async def on_shipped(body: dict[str, Any], msg: faststream_nats.NatsMessage) -> None:
        if not received.done():
            received.set_result((body, dict(msg.headers)))

    async with cleanup_streams() as doomed, System(Service(name), transport=url) as system:
        assert isinstance(system.transport, NatsTransport)
        sent = system.node.envelope(
            ParcelShipped(order_id="o-7", parcels=3), source="seawall-interop", subject="o-7"
        )
        await system.transport.publish(f"{name}.events", sent)
        doomed.update(_names(system.transport))
        async with broker:
            await broker.start()
            body, headers = await asyncio.wait_for(received, 10.0)
    assert body == {"order_id": "o-7", "parcels": 3}
    assert headers["ce-id"] == sent.id
    assert headers["ce-type"] == "interop.ParcelShipped"
    assert headers["ce-source"] == "seawall-interop"
    assert headers["ce-specversion"] == "1.0"
    assert headers["ce-subject"] == "o-7"
    assert headers["ce-kind"] == "event"
    assert headers["ce-dataschema"] == sent.dataschema
    assert headers["content-type"] == "application/json"


async def test_a_seawall_service_handles_what_a_faststream_publisher_sent() -> None:
    url = require(NATS)
    name = unique("fsin")
    received: list[ParcelShipped] = []
    svc = Service(name)

    @svc.command
    async def shipped(event: ParcelShipped) -> None:
        received.append(event)

    broker = faststream_nats.NatsBroker(url)
    async with cleanup_streams() as doomed, System(svc, transport=url) as system:
        assert isinstance(system.transport, NatsTransport)
        doomed.update(_names(system.transport))
        async with broker:
            await broker.start()
            ack = await broker.publish(
                {"order_id": "o-8", "parcels": 4},
                f"seawall.{name}.0",
                stream=f"SEAWALL_{name}",
                headers={
                    "ce-id": f"faststream-{uuid.uuid4().hex}",
                    "ce-type": "interop.ParcelShipped",
                    "ce-source": "faststream",
                    "ce-specversion": "1.0",
                    "ce-kind": "command",
                },
            )
            assert ack is not None, "FastStream's JetStream publish was not acknowledged"
            assert ack.stream == f"SEAWALL_{name}", ack
            await wait_until(lambda: bool(received), 10.0, "the FastStream publisher's message")
    assert received == [ParcelShipped(order_id="o-8", parcels=4)]
