"""The seawall:// transport against a real broker server on a real socket: what only it does.

The shared suites run over TCP (memory or durable embedded broker behind the
server) and over a unix socket from ``test_matrix.py``; here are reconnection,
URLs, pipelining, what the client learns of the broker behind the server, and
the link's own edge cases.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from seawall import (
    ChannelSpec,
    Command,
    ConfigurationError,
    ConnectionLost,
    Document,
    Durability,
    Service,
    System,
    SystemClock,
    TransportClosed,
    connect,
)
from seawall._server.server import BrokerServer
from seawall._transport import MAX_PRIORITIES
from seawall._wire.protocol import Frame, Ok, Publish
from seawall._wire.streams import FramedStream
from seawall.testing._conformance import Inbox, ids, make_message
from seawall.transports.embedded import EmbeddedTransport
from seawall.transports.memory import MemoryTransport
from seawall.transports.seawall import SeawallTransport
from seawall.transports.seawall._link import Link


async def test_the_client_learns_what_the_durable_broker_can_do(tmp_path: Path) -> None:
    backing = EmbeddedTransport(tmp_path / "data")
    async with BrokerServer(backing, host="127.0.0.1") as server:
        transport = await SeawallTransport.connect(f"seawall://127.0.0.1:{server.port}")
        await transport.declare(ChannelSpec(name="probe"))
        capabilities = transport.capabilities
        assert capabilities.durability is Durability.LOCAL_FSYNC
        assert capabilities.replay
        assert capabilities.priorities == MAX_PRIORITIES
        await transport.close()
    await backing.close()


async def test_a_restarted_broker_is_picked_up_by_the_next_publish() -> None:
    backing = MemoryTransport()
    server = BrokerServer(backing, host="127.0.0.1")
    await server.start()
    port = server.port
    transport = await SeawallTransport.connect(
        f"seawall://127.0.0.1:{port}", connect_timeout=1.0, publish_timeout=0.5
    )
    try:
        sub = await transport.subscribe("orders", group="billing")
        async with Inbox(sub, patience=5.0) as inbox:
            await server.close()
            _, error = await inbox.finish()
            assert isinstance(error, ConnectionLost), error
        with pytest.raises(ConnectionLost, match="cannot reach the broker"):
            await transport.publish("orders", make_message(1))  # nobody listens: retried 0.5 s
        async with BrokerServer(backing, host="127.0.0.1", port=port):
            sent = make_message(2)
            await transport.publish("orders", sent)
            again = await transport.subscribe("orders", group="billing")
            async with Inbox(again, patience=5.0) as inbox:
                assert ids(await inbox.collect(1)) == [sent.id]
    finally:
        await transport.close()
        await backing.close()


async def test_connect_by_url_is_lazy_and_hides_the_token() -> None:
    backing = MemoryTransport()
    async with BrokerServer(backing, host="127.0.0.1") as server:
        transport = connect(f"seawall://not-a-real-token-1234@127.0.0.1:{server.port}")
        assert isinstance(transport, SeawallTransport)
        assert "not-a-real-token" not in repr(transport)
        await transport.publish("orders", make_message(0))  # connects now
        assert backing.has_channel("orders")
        await transport.close()
    await backing.close()


@pytest.mark.parametrize(
    "url",
    [
        "seawall://127.0.0.1",
        "seawall://:4300",
        "seawall+unix://",
        "nats2://x:1",
        "seawall://h:99999",
    ],
)
def test_bad_urls_are_refused_with_the_expected_form(url: str) -> None:
    with pytest.raises(ConfigurationError):
        connect(url)


async def test_publishers_beyond_the_pipeline_limit_wait_their_turn() -> None:
    backing = MemoryTransport()
    async with BrokerServer(backing, host="127.0.0.1") as server:
        transport = await SeawallTransport.connect(f"seawall://127.0.0.1:{server.port}", pipeline=4)
        sent = [make_message(i) for i in range(200)]
        await asyncio.gather(*(transport.publish("orders", m) for m in sent))
        sub = await transport.subscribe("orders", group="billing", prefetch=200)
        async with Inbox(sub, patience=5.0) as inbox:
            assert sorted(ids(await inbox.collect(200))) == sorted(ids(sent))
        await transport.close()
    await backing.close()


async def test_a_subscription_the_broker_loses_ends_the_connection() -> None:
    backing = MemoryTransport()
    async with BrokerServer(backing, host="127.0.0.1") as server:
        transport = await SeawallTransport.connect(f"seawall://127.0.0.1:{server.port}")
        sub = await transport.subscribe("orders", group="billing")
        async with Inbox(sub, patience=5.0) as inbox:
            backing.disconnect()  # the broker's own subscription breaks
            _, error = await inbox.finish()
        assert isinstance(error, ConnectionLost), error
        assert "lost the subscription to 'orders'" in str(error)
        await transport.publish("orders", make_message())  # a new connection works
        await transport.close()
    await backing.close()


class Ask(Command, frozen=True):
    n: int


class Answer(Document, frozen=True):
    n: int


async def test_a_system_runs_on_a_seawall_url() -> None:
    """What the CLI does: services and a caller on a broker named by URL."""
    svc = Service("doubler")

    @svc.command
    async def double(ask: Ask) -> Answer:
        return Answer(n=ask.n * 2)

    backing = MemoryTransport()
    async with (
        BrokerServer(backing, host="127.0.0.1") as server,
        System(svc, transport=f"seawall://127.0.0.1:{server.port}") as system,
    ):
        reply = await system.context().request("doubler", Ask(n=21), returns=Answer)
        assert reply == Answer(n=42)
    await backing.close()


async def test_an_answer_read_as_the_link_closes_is_dropped_not_an_error() -> None:
    # The Ok of a publish may sit in the batch being read when the transport closes:
    # the closed link abandoned its pipeline, so the answer is late, not out of step
    # (it was taken for one, and the client sent the broker an Error on its way out).
    server_side, client_side = socket.socketpair()
    reader, writer = await asyncio.open_connection(sock=client_side)
    stream = FramedStream(reader, writer, max_frame=1 << 20, heartbeat=5.0, clock=SystemClock())
    answers = asyncio.Queue[list[Frame]]()

    async def batches() -> AsyncIterator[list[Frame]]:
        while frames := await answers.get():
            yield frames

    link = Link(stream, batches(), "test", pipeline=8)
    waiting = link.request(Publish, "orders", b"m")
    queued = bytes(stream._out)  # the Publish, not written in this test
    link.fail(TransportClosed("closing"))
    answers.put_nowait([Ok(0)])
    answers.put_nowait([])
    why = await link._read()
    assert "closed the connection" in str(why)  # the stream ended, nothing was out of step
    assert stream._out == queued  # and no Error frame queued for the broker
    with pytest.raises(TransportClosed):
        await waiting
    stream.abort()
    server_side.close()
