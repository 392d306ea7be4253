"""The NATS JetStream transport against a real server: both conformance suites,
interoperability with a plain nats-py client, and a server restart mid-stream."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import nats
import pytest
from nats.js.api import ConsumerConfig
from tests.brokers import NATS, free_port, require

from seawall import Event, Service, System
from seawall._exceptions import ConnectionLost
from seawall._transport import ChannelSpec, Transport
from seawall.testing import DeliveryConformance, TransportConformance
from seawall.transports.nats import NatsTransport

pytestmark = pytest.mark.integration
NATS_SERVER = "/usr/sbin/nats-server"


class NatsSuite:
    """Transports on the shared server; every stream a test makes is deleted after it."""

    timeout = 10.0
    quiet_period = 0.3
    publish_timeout = 0.3

    async def make_transport(self) -> NatsTransport:
        return self._made(await NatsTransport.connect(require(NATS), pull_expires=2.0))

    async def make_transport_with_publish_timeout(self, seconds: float) -> NatsTransport:
        return self._made(await NatsTransport.connect(require(NATS), publish_timeout=seconds))

    def _made(self, transport: NatsTransport) -> NatsTransport:
        self.__dict__.setdefault("made", []).append(transport)
        return transport

    async def break_link(self, transport: Transport) -> None:
        assert isinstance(transport, NatsTransport)
        await transport.drop_connection_for_tests()

    @pytest.fixture(autouse=True)
    async def _delete_streams(self) -> AsyncIterator[None]:
        yield
        made: list[NatsTransport] = self.__dict__.get("made", [])
        async with cleanup_streams() as doomed:
            doomed.update(s.name for t in made for s in t._streams.values())


class TestNatsTransport(NatsSuite, TransportConformance):
    pass


class TestNatsDelivery(NatsSuite, DeliveryConformance):
    pass


@contextlib.asynccontextmanager
async def cleanup_streams(url: str | None = None) -> AsyncIterator[set[str]]:
    """Collect stream names in the yielded set; they are deleted on exit."""
    doomed: set[str] = set()
    try:
        yield doomed
    finally:
        client = await nats.connect(url or require(NATS))
        js = client.jetstream()
        for name in doomed:
            with contextlib.suppress(nats.js.errors.NotFoundError):
                await js.delete_stream(name)
        await client.close()


# -- interoperability with a client seawall did not write -----------------------
class OrderShipped(Event):
    type_name = "interop.OrderShipped"
    type_version = "1.0.0"

    order_id: str
    parcels: int


async def test_plain_nats_client_reads_a_seawall_event_and_seawall_reads_its_event() -> None:
    url = require(NATS)
    name = f"interop{uuid.uuid4().hex[:8]}"
    received: list[OrderShipped] = []
    svc = Service(name)

    @svc.command
    async def shipped(event: OrderShipped) -> None:
        received.append(event)

    plain = await nats.connect(url)
    js = plain.jetstream()
    async with cleanup_streams() as doomed, System(svc, transport=f"nats://{url[7:]}") as system:
        transport = system.transport
        assert isinstance(transport, NatsTransport)
        doomed.update(s.name for s in transport._streams.values())
        # seawall publishes; the plain client reads the stream with a consumer of its own
        await system.context().publish(
            OrderShipped(order_id="o-1", parcels=2), channel=f"{name}.events"
        )
        doomed.update(s.name for s in transport._streams.values())
        subject = f"seawall.{name}_2eevents.0"
        sub = await js.pull_subscribe(subject, "plain", config=ConsumerConfig(ack_wait=5.0))
        [msg] = await sub.fetch(1, timeout=5.0)
        await msg.ack()
        assert msg.headers is not None
        assert msg.headers["ce-type"] == "interop.OrderShipped"
        assert msg.headers["ce-specversion"] == "1.0"
        assert msg.headers["ce-source"]
        assert msg.headers["ce-id"]
        assert msg.headers["ce-kind"] == "event"
        assert msg.headers["content-type"] == "application/json"
        assert json.loads(msg.data) == {"order_id": "o-1", "parcels": 2}

        # the plain client publishes CloudEvents headers; a seawall handler takes it
        await js.publish(
            f"seawall.{name}.0",
            json.dumps({"order_id": "o-2", "parcels": 5}).encode(),
            headers={
                "ce-id": "plain-1",
                "ce-type": "interop.OrderShipped",
                "ce-source": "plain-nats-py",
                "ce-specversion": "1.0",
                "content-type": "application/json",
            },
        )
        async with asyncio.timeout(10):
            while not received:
                await asyncio.sleep(0.01)
    await plain.close()
    assert received == [OrderShipped(order_id="o-2", parcels=5)]


# -- faults: the server dies mid-stream ---------------------------------------------
@contextlib.contextmanager
def nats_server(port: int, store: Path) -> Iterator[list[subprocess.Popen[bytes]]]:
    """A nats-server of this test's own; the yielded list holds the running process."""
    procs: list[subprocess.Popen[bytes]] = []

    def start() -> None:
        command = [NATS_SERVER, "-a", "127.0.0.1", "-p", str(port), "-js", "-sd", str(store)]
        procs.append(subprocess.Popen(command, stderr=subprocess.DEVNULL))

    procs_start = start
    procs_start()
    try:
        yield procs
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait()


def _restart(procs: list[subprocess.Popen[bytes]], port: int, store: Path) -> None:
    os.kill(procs[-1].pid, signal.SIGKILL)
    procs[-1].wait()
    command = [NATS_SERVER, "-a", "127.0.0.1", "-p", str(port), "-js", "-sd", str(store)]
    procs.append(subprocess.Popen(command, stderr=subprocess.DEVNULL))


async def _wait_listening(port: int) -> None:
    async with asyncio.timeout(10):
        while True:
            with contextlib.suppress(OSError):
                _, writer = await asyncio.open_connection("127.0.0.1", port)
                writer.close()
                return
            await asyncio.sleep(0.02)


class Tick(Event):
    type_name = "fault.Tick"
    type_version = "1.0.0"

    n: int


async def test_server_killed_and_restarted_mid_stream_loses_no_acknowledged_message(
    tmp_path: Path,
) -> None:
    if not Path(NATS_SERVER).exists():
        pytest.skip(f"{NATS_SERVER} is not installed (apt-get install nats-server)")
    port = free_port()
    name = f"fault{uuid.uuid4().hex[:8]}"
    seen: set[int] = set()
    svc = Service(name)

    @svc.command
    async def tick(event: Tick) -> None:
        seen.add(event.n)

    with nats_server(port, tmp_path) as procs:
        await _wait_listening(port)
        transport = await NatsTransport.connect(
            f"nats://127.0.0.1:{port}", publish_timeout=10.0, pull_expires=1.0
        )
        await transport.declare(ChannelSpec(name=name))
        acked: list[int] = []
        failed: list[tuple[int, float]] = []

        async def publish(n: int) -> None:
            started = time.monotonic()
            try:
                await transport.publish(name, svc_message(n))
                acked.append(n)
            except ConnectionLost:
                failed.append((n, time.monotonic() - started))

        def svc_message(n: int):  # type: ignore[no-untyped-def]
            return system.node.envelope(Tick(n=n), source="fault-test")

        async with System(svc, transport=transport) as system:
            for n in range(200):
                await publish(n)
                if n == 100:
                    _restart(procs, port, tmp_path)
            async with asyncio.timeout(20):
                while not set(acked) <= seen:
                    await asyncio.sleep(0.02)
            assert system.healthy
        await transport.close()
    assert set(acked) <= seen, f"acknowledged but never delivered: {sorted(set(acked) - seen)}"
    assert len(acked) >= 190, f"only {len(acked)} of 200 publishes went through: {failed}"
    assert all(waited <= 10.5 for _, waited in failed), failed
