"""Publishes survive a restart of ``seawall broker``: a publish in flight while the broker
process is killed and started again is retried on a new link within its deadline,
instead of failing with ``ConnectionLost``, and every acknowledged message is delivered
exactly once.

The client talks to the broker through a small TCP relay, which the test tells to swallow
the broker's answers for a moment before the kill: the publishes in flight then are stored
but never acknowledged, so their retries after the restart repeat publishes the broker
already holds. Its duplicate window (kept in the store, so it survives the restart) drops
them by message id.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from pathlib import Path

import pytest
from tests.broker_process import start_broker, stop
from tests.brokers import free_port

from seawall import ConnectionLost, Message, uuid7
from seawall.transports.seawall import SeawallTransport

pytestmark = pytest.mark.slow

COUNT = 800
WRITERS = 16
"""Publishers at once: about this many publishes are in flight when the broker dies."""


def _message(n: int) -> Message:
    return Message(id=uuid7(), type="failover.Sent", source="test", data=str(n).encode())


class Relay:
    """Forwards TCP connections to ``port``; ``swallow`` drops what the broker answers."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.swallow = False
        self.swallowed = 0
        self._links: set[asyncio.Task[None]] = set()

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._link, "127.0.0.1", 0)
        return int(self._server.sockets[0].getsockname()[1])

    async def _link(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.port)
        except OSError:  # the broker is down: the client connects again later
            writer.close()
            return
        try:
            async with asyncio.TaskGroup() as tasks:
                tasks.create_task(self._pipe(reader, up_writer, answers=False))
                tasks.create_task(self._pipe(up_reader, writer, answers=True))
        except* OSError:
            pass

    async def _pipe(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, answers: bool
    ) -> None:
        try:
            while data := await reader.read(65536):
                if answers and self.swallow:
                    self.swallowed += len(data)
                    continue
                writer.write(data)
                await writer.drain()
        finally:
            writer.close()  # one side ended: end the other, as a broken link would

    async def close(self) -> None:
        self._server.close()
        with contextlib.suppress(Exception):
            await self._server.wait_closed()


async def test_publishes_in_flight_across_a_broker_restart_are_stored_once(
    tmp_path: Path,
) -> None:
    port = free_port()
    broker = await asyncio.to_thread(start_broker, tmp_path / "data", port)
    relay = Relay(port)
    url = f"seawall://127.0.0.1:{await relay.start()}"
    transport = await SeawallTransport.connect(url, publish_timeout=20)
    failures: list[BaseException] = []
    acked: list[str] = []
    restarted, a_third = asyncio.Event(), asyncio.Event()

    async def publish_all(first: int) -> None:
        for n in range(first, COUNT, WRITERS):
            message = _message(n)
            try:
                await transport.publish("orders", message)
            except ConnectionLost as exc:
                failures.append(exc)
                continue
            acked.append(message.id)
            if len(acked) == COUNT // 3:
                a_third.set()
            await asyncio.sleep(0.002)

    async def restart_midway() -> None:
        nonlocal broker
        await a_third.wait()
        relay.swallow = True  # the publishes in flight are stored, their answers lost
        await asyncio.sleep(0.3)
        await asyncio.to_thread(stop, broker, signal.SIGKILL)
        relay.swallow = False
        broker = await asyncio.to_thread(start_broker, tmp_path / "data", port)
        restarted.set()

    try:
        async with asyncio.TaskGroup() as tasks:
            for first in range(WRITERS):
                tasks.create_task(publish_all(first))
            tasks.create_task(restart_midway())
        assert restarted.is_set()
        assert relay.swallowed > 0, "no answer was lost: the test did not test retries"
        assert failures == [], f"{len(failures)} publishes failed, e.g. {failures[:1]}"
        end = _message(-1)
        await transport.publish("orders", end)  # after every retry: read up to it
        delivered: list[str] = []
        sub = await transport.subscribe("orders", group="audit", prefetch=256)
        async with asyncio.timeout(20):
            async for delivery in sub:
                await sub.ack(delivery)
                if delivery.message.id == end.id:
                    break
                delivered.append(delivery.message.id)
        await sub.close()
        assert set(acked) <= set(delivered), f"{len(set(acked) - set(delivered))} lost"
        duplicates = len(delivered) - len(set(delivered))
        assert duplicates == 0, f"{duplicates} stored twice: the duplicate window let them in"
    finally:
        await transport.close()
        await relay.close()
        await asyncio.to_thread(stop, broker, signal.SIGTERM)
