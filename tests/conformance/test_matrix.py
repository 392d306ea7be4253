"""The conformance matrix: every transport configuration runs the shared suites, from one table.

Each row of :data:`MATRIX` is a transport in one configuration: the factory
that makes its transports (and cleans up after the test), the shipped suites
it passes (:class:`~seawall.testing.TransportConformance`, the delivery
contract at the transport interface; :class:`~seawall.testing.DeliveryConformance`,
the runtime's retries, dead letters and order on top of it) and the timing it
needs. Test ids name the row: ``TestTransport::test_…[redis]``.

Rows on a shared broker server are marked ``integration``; their factory calls
:func:`tests.brokers.require` (skipped outside CI when the server is down,
failed in CI) and deletes the streams, queues and keys its transports made.
What only one broker does (faults, partition hand-over, interoperability with
its own clients) stays in ``test_transport_<broker>.py``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from tests.brokers import (
    NATS,
    RABBITMQ,
    REDIS,
    RUN,
    cleanup_rabbitmq,
    cleanup_streams,
    require,
    scratch_prefix,
)

from seawall import MemoryTransport, Transport
from seawall._broker.engine import BrokerLimits
from seawall._server.server import BrokerServer
from seawall.testing import CrashConformance, DeliveryConformance, TransportConformance
from seawall.transports.embedded import EmbeddedTransport, SyncPolicy
from seawall.transports.nats import NatsTransport
from seawall.transports.rabbitmq import RabbitMQTransport
from seawall.transports.redis import RedisTransport
from seawall.transports.seawall import SeawallTransport


@dataclass(frozen=True)
class Factory:
    """How the suites get transports of one row, for one test."""

    make: Callable[[], Awaitable[Transport]]
    break_link: Callable[[Transport], Awaitable[None]]
    with_publish_timeout: Callable[[float], Awaitable[Transport]]
    """A transport whose publishers give up with ChannelFull after the seconds given."""
    member_url: str | None = None
    """The URL another process joins the row's broker with (None: no other process can)."""


Setup = Callable[[Path], AbstractAsyncContextManager[Factory]]
"""Opens a row for one test (given a scratch folder) and cleans up after it."""


@dataclass(frozen=True)
class Timing:
    """The suites' waits for a row: see :class:`~seawall.testing.TransportConformance`."""

    quiet_period: float
    nack_delay: float
    publish_timeout: float
    timeout: float | None = None
    """None: each suite's own default."""
    group_expiry: float | None = None
    """The idle expiry the suite gives its groups; None: the suite's default."""
    expiry_sweep: float | None = None
    """How late the broker may delete an idle group; None: the suite's default."""


@dataclass(frozen=True)
class Row:
    """One transport configuration and the suites it runs."""

    name: str
    setup: Setup
    suites: tuple[type, ...]
    timing: Timing
    integration: bool = False


# -- factories -------------------------------------------------------------------------
async def _disconnect(transport: Transport) -> None:
    assert isinstance(transport, MemoryTransport | EmbeddedTransport | SeawallTransport)
    transport.disconnect()


async def _drop_connection(transport: Transport) -> None:
    assert isinstance(transport, NatsTransport | RabbitMQTransport | RedisTransport)
    await transport.drop_connection_for_tests()


def memory(*, serialize: bool = True) -> Setup:
    """The in-process reference transport; ``serialize=False`` keeps messages as objects."""

    @contextlib.asynccontextmanager
    async def setup(_: Path) -> AsyncIterator[Factory]:
        async def make() -> Transport:
            return MemoryTransport(serialize=serialize)

        async def with_publish_timeout(seconds: float) -> Transport:
            return MemoryTransport(serialize=serialize, publish_timeout=seconds)

        yield Factory(make, _disconnect, with_publish_timeout)

    return setup


def embedded(*, sync: SyncPolicy | None = None) -> Setup:
    """The embedded broker in this process: on disk with ``sync`` given, else in memory."""

    @contextlib.asynccontextmanager
    async def setup(scratch: Path) -> AsyncIterator[Factory]:
        path = None if sync is None else scratch / "data"

        async def make() -> Transport:
            return EmbeddedTransport(path, sync=sync or "batch")

        async def with_publish_timeout(seconds: float) -> Transport:
            limits = BrokerLimits(publish_timeout=seconds)
            return EmbeddedTransport(path, sync=sync or "batch", limits=limits)

        yield Factory(make, _disconnect, with_publish_timeout)

    return setup


Backing = Callable[[Path, float | None], Transport]
"""The transport a broker server serves: given a fresh folder and a publish timeout."""


def _memory_backing(_: Path, publish_timeout: float | None) -> Transport:
    return MemoryTransport(publish_timeout=publish_timeout)


def _embedded_backing(folder: Path, publish_timeout: float | None) -> Transport:
    limits = None if publish_timeout is None else BrokerLimits(publish_timeout=publish_timeout)
    return EmbeddedTransport(folder, limits=limits)


def served(backing: Backing, *, unix: bool = False) -> Setup:
    """``seawall://`` clients of a broker server on a real socket, serving ``backing``."""

    @contextlib.asynccontextmanager
    async def setup(scratch: Path) -> AsyncIterator[Factory]:
        async with contextlib.AsyncExitStack() as stack:
            listen = _listener(stack) if unix else _on_loopback
            servers: list[BrokerServer] = []

            async def serve(publish_timeout: float | None) -> str:
                transport = backing(scratch / f"data{len(servers)}", publish_timeout)
                stack.push_async_callback(transport.close)  # after the server stopped
                server, url = listen(transport, len(servers))
                servers.append(await stack.enter_async_context(server))
                return url()

            url = await serve(None)

            async def make() -> Transport:
                return await SeawallTransport.connect(url)

            async def with_publish_timeout(seconds: float) -> Transport:
                return await SeawallTransport.connect(await serve(seconds))

            yield Factory(make, _disconnect, with_publish_timeout, url)

    return setup


Listen = Callable[[Transport, int], tuple[BrokerServer, Callable[[], str]]]
"""A broker server for a transport (the how-manyth of the test) and its URL once started."""


def _on_loopback(transport: Transport, _: int) -> tuple[BrokerServer, Callable[[], str]]:
    server = BrokerServer(transport, host="127.0.0.1")
    return server, lambda: f"seawall://127.0.0.1:{server.port}"


def _listener(stack: contextlib.AsyncExitStack) -> Listen:
    """Servers on unix sockets in a folder of their own, checked empty once they stopped."""
    # socket paths are limited to about 100 characters: a short folder, not tmp_path
    folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="sw")))
    stack.callback(_no_socket_left, folder)

    def listen(transport: Transport, n: int) -> tuple[BrokerServer, Callable[[], str]]:
        server = BrokerServer(transport, path=folder / f"broker{n}.sock")
        return server, lambda: f"seawall+unix://{server.path}"

    return listen


def _no_socket_left(folder: Path) -> None:
    assert list(folder.iterdir()) == [], "the server left its socket file behind"


def nats() -> Setup:
    """NATS JetStream on the shared server; the streams its transports made are deleted."""

    @contextlib.asynccontextmanager
    async def setup(_: Path) -> AsyncIterator[Factory]:
        url = require(NATS)
        made: list[NatsTransport] = []

        async def make() -> Transport:
            made.append(await NatsTransport.connect(url, pull_expires=2.0))
            return made[-1]

        async def with_publish_timeout(seconds: float) -> Transport:
            made.append(await NatsTransport.connect(url, publish_timeout=seconds))
            return made[-1]

        async with cleanup_streams() as doomed:
            try:
                yield Factory(make, _drop_connection, with_publish_timeout, url)
            finally:
                doomed.update(s.name for t in made for s in t._streams.values())

    return setup


def rabbitmq() -> Setup:
    """RabbitMQ on the shared server; the queues and exchanges its transports made are deleted."""

    @contextlib.asynccontextmanager
    async def setup(_: Path) -> AsyncIterator[Factory]:
        url = require(RABBITMQ)
        made: list[RabbitMQTransport] = []

        async def make() -> Transport:
            made.append(await RabbitMQTransport.connect(url))
            return made[-1]

        async def with_publish_timeout(seconds: float) -> Transport:
            made.append(await RabbitMQTransport.connect(url, publish_timeout=seconds))
            return made[-1]

        async with cleanup_rabbitmq() as doomed:
            try:
                yield Factory(make, _drop_connection, with_publish_timeout, url)
            finally:
                doomed.update(kind_name for t in made for kind_name in t.topology.made)

    return setup


def redis() -> Setup:
    """Redis Streams on the shared server, under a key prefix of the test's own, deleted after."""

    @contextlib.asynccontextmanager
    async def setup(_: Path) -> AsyncIterator[Factory]:
        url = require(REDIS)
        async with scratch_prefix() as prefix:

            async def make() -> Transport:
                return await RedisTransport.connect(url, prefix=prefix)

            async def with_publish_timeout(seconds: float) -> Transport:
                return await RedisTransport.connect(url, prefix=prefix, publish_timeout=seconds)

            yield Factory(make, _drop_connection, with_publish_timeout, f"{url}?prefix={prefix}")

    return setup


# -- the matrix ------------------------------------------------------------------------
T, D, C = TransportConformance, DeliveryConformance, CrashConformance
# in process, deliveries are immediate: a short watch for what must not arrive suffices
# the embedded broker deletes an idle group on time: short expiries suffice
IN_PROCESS = Timing(
    quiet_period=0.05, nack_delay=0.1, publish_timeout=0.1, group_expiry=0.3, expiry_sweep=0.2
)
OVER_A_SOCKET = Timing(
    quiet_period=0.1, nack_delay=0.15, publish_timeout=0.2, group_expiry=0.3, expiry_sweep=0.2
)
SHARED_SERVER = Timing(quiet_period=0.3, nack_delay=0.2, publish_timeout=0.3, timeout=10.0)
# RabbitMQ looks at a quorum queue's expiry on its tick, every 5 s
RABBITMQ_SERVER = dataclasses.replace(SHARED_SERVER, expiry_sweep=5.5)
# Redis: the next subscription sweeps, by the server's clock
REDIS_SERVER = dataclasses.replace(SHARED_SERVER, expiry_sweep=0.3)

MATRIX = [
    Row("memory", memory(), (T, D), IN_PROCESS),
    Row("memory-objects", memory(serialize=False), (T,), IN_PROCESS),
    Row("embedded-in-memory", embedded(), (T, D), IN_PROCESS),
    Row("embedded-batch", embedded(sync="batch"), (T, D), IN_PROCESS),
    Row("seawall-tcp", served(_memory_backing), (T, D, C), OVER_A_SOCKET),
    Row("seawall-tcp-embedded", served(_embedded_backing), (T,), OVER_A_SOCKET),
    Row("seawall-unix", served(_memory_backing, unix=True), (T,), OVER_A_SOCKET),
    Row("nats", nats(), (T, D, C), SHARED_SERVER, integration=True),
    Row("rabbitmq", rabbitmq(), (T, D, C), RABBITMQ_SERVER, integration=True),
    Row("redis", redis(), (T, D, C), REDIS_SERVER, integration=True),
]


def rows(suite: type) -> list[Any]:
    """The rows that run ``suite``, as parameters of the ``row`` fixture."""
    return [
        pytest.param(row, id=row.name, marks=[pytest.mark.integration] if row.integration else [])
        for row in MATRIX
        if suite in row.suites
    ]


class OnARow:
    """Supplies a suite's hooks from the row the test is parametrized with."""

    factory: Factory
    channel_prefix = f"conformance-{RUN}."  # names this run makes on shared servers
    name_prefix = f"svc-{RUN}-"

    @pytest_asyncio.fixture(autouse=True)
    async def row(self, request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Row]:
        row: Row = request.param
        timing = {k: v for k, v in vars(row.timing).items() if v is not None}
        async with row.setup(tmp_path) as factory:
            self.factory = factory
            vars(self).update(timing)
            yield row

    async def make_transport(self) -> Transport:
        return await self.factory.make()

    async def break_link(self, transport: Transport) -> None:
        await self.factory.break_link(transport)

    async def make_transport_with_publish_timeout(self, seconds: float) -> Transport:
        return await self.factory.with_publish_timeout(seconds)

    async def member_url(self) -> str | None:
        return self.factory.member_url


@pytest.mark.parametrize("row", rows(TransportConformance), indirect=True)
class TestTransport(OnARow, TransportConformance):
    """The transport contract, on every row."""


@pytest.mark.parametrize("row", rows(DeliveryConformance), indirect=True)
class TestDelivery(OnARow, DeliveryConformance):
    """The runtime's delivery guarantees, on every row that runs them."""


@pytest.mark.parametrize("row", rows(CrashConformance), indirect=True)
class TestCrash(OnARow, CrashConformance):
    """Per-key order across a consumer killed with kill -9, on every row whose broker
    another process can join (memory:// and an embedded broker in this process cannot)."""
