"""The seawall:// transport against a real broker server on a real socket.

The server is backed by the memory transport; both conformance suites run
through it over TCP, the transport suite over a unix socket too, and once
more over TCP with the durable embedded broker behind the server, as
``seawall broker`` serves it (replay and priority levels reach the client). Breaking the
link really drops the client's socket.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from seawall import (
    Command,
    ConfigurationError,
    ConnectionLost,
    Document,
    Service,
    System,
    TransportClosed,
    connect,
)
from seawall._broker.engine import BrokerLimits
from seawall._clock import SystemClock
from seawall._server.server import BrokerServer
from seawall._transport import MAX_PRIORITIES, ChannelSpec, Durability, Transport
from seawall._wire.protocol import Frame, Ok, Publish
from seawall._wire.streams import FramedStream
from seawall.testing import DeliveryConformance
from seawall.testing._conformance import Inbox, TransportConformance, ids, make_message
from seawall.transports.embedded import EmbeddedTransport
from seawall.transports.memory import MemoryTransport
from seawall.transports.seawall import SeawallTransport
from seawall.transports.seawall._link import Link


class ServedByBroker:
    """Runs a broker server backed by a memory transport for each test, over TCP."""

    quiet_period = 0.1
    nack_delay = 0.15
    publish_timeout = 0.2

    @pytest_asyncio.fixture(autouse=True)
    async def broker(self) -> AsyncIterator[BrokerServer]:
        async with contextlib.AsyncExitStack() as stack:
            self.stack = stack
            self.server = await self.serve(MemoryTransport())
            yield self.server

    async def serve(self, backing: Transport) -> BrokerServer:
        """A server for ``backing``, stopped (and ``backing`` closed) after the test."""
        self.stack.push_async_callback(backing.close)
        return await self.stack.enter_async_context(BrokerServer(backing, host="127.0.0.1"))

    def url(self, server: BrokerServer) -> str:
        return f"seawall://127.0.0.1:{server.port}"

    async def make_transport(self) -> Transport:
        return await SeawallTransport.connect(self.url(self.server))

    async def break_link(self, transport: Transport) -> None:
        assert isinstance(transport, SeawallTransport)
        transport.disconnect()

    async def make_transport_with_publish_timeout(self, seconds: float) -> Transport:
        server = await self.serve(MemoryTransport(publish_timeout=seconds))
        return await SeawallTransport.connect(self.url(server))


class TestSeawallTransport(ServedByBroker, TransportConformance, DeliveryConformance):
    """Both suites over TCP."""


class TestSeawallTransportDurable(ServedByBroker, TransportConformance):
    """The transport suite over TCP, served from the durable embedded broker."""

    @pytest_asyncio.fixture(autouse=True)
    async def broker(self, tmp_path: Path) -> AsyncIterator[BrokerServer]:
        self.data = tmp_path
        async with contextlib.AsyncExitStack() as stack:
            self.stack = stack
            self.server = await self.serve(EmbeddedTransport(tmp_path / "data"))
            yield self.server

    async def make_transport_with_publish_timeout(self, seconds: float) -> Transport:
        limits = BrokerLimits(publish_timeout=seconds)
        server = await self.serve(EmbeddedTransport(self.data / "timeout", limits=limits))
        return await SeawallTransport.connect(self.url(server))

    async def test_the_client_learns_what_the_durable_broker_can_do(
        self, transport: Transport
    ) -> None:
        await transport.declare(ChannelSpec(name=self.channel_name("probe")))
        capabilities = transport.capabilities
        assert capabilities.durability is Durability.LOCAL_FSYNC
        assert capabilities.replay
        assert capabilities.priorities == MAX_PRIORITIES


class TestSeawallTransportUnix(ServedByBroker, TransportConformance):
    """The transport suite over unix sockets."""

    @pytest_asyncio.fixture(autouse=True)
    async def broker(self) -> AsyncIterator[BrokerServer]:
        # a short folder: socket paths are limited to about 100 characters
        with tempfile.TemporaryDirectory(prefix="sw") as folder:
            self.folder = Path(folder)
            async with contextlib.AsyncExitStack() as stack:
                self.stack = stack
                self.server = await self.serve(MemoryTransport())
                yield self.server
            assert list(self.folder.iterdir()) == [], "the server left its socket file behind"

    async def serve(self, backing: MemoryTransport) -> BrokerServer:
        self.stack.push_async_callback(backing.close)
        path = self.folder / f"broker{len(list(self.folder.iterdir()))}.sock"
        return await self.stack.enter_async_context(BrokerServer(backing, path=path))

    def url(self, server: BrokerServer) -> str:
        return f"seawall+unix://{server.path}"


async def test_a_restarted_broker_is_picked_up_by_the_next_publish() -> None:
    backing = MemoryTransport()
    server = BrokerServer(backing, host="127.0.0.1")
    await server.start()
    port = server.port
    transport = await SeawallTransport.connect(f"seawall://127.0.0.1:{port}", connect_timeout=1.0)
    try:
        sub = await transport.subscribe("orders", group="billing")
        async with Inbox(sub, patience=5.0) as inbox:
            await server.close()
            _, error = await inbox.finish()
            assert isinstance(error, ConnectionLost), error
        with pytest.raises(ConnectionLost, match="cannot reach the broker"):
            await transport.publish("orders", make_message(1))  # nobody listens
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
