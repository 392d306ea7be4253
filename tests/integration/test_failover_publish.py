"""Publishes survive a restart of ``seawall broker``: a publish in flight while the broker
process is killed and started again is retried on a new link within its deadline,
instead of failing with ``ConnectionLost``, and every acknowledged message is delivered.

The broker keeps no message ids, so a publish stored just before the link broke may be
stored twice (at least once); the test counts such duplicates and asserts none lost.
"""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import pytest
from tests.broker_process import start_broker, stop
from tests.brokers import free_port

from seawall import ConnectionLost, Message, uuid7
from seawall.transports.seawall import SeawallTransport

pytestmark = pytest.mark.slow

COUNT = 400


def _message(n: int) -> Message:
    return Message(id=uuid7(), type="failover.Sent", source="test", data=str(n).encode())


async def test_publishes_in_flight_across_a_broker_restart_are_retried(tmp_path: Path) -> None:
    port = free_port()
    broker = await asyncio.to_thread(start_broker, tmp_path / "data", port)
    transport = await SeawallTransport.connect(f"seawall://127.0.0.1:{port}", publish_timeout=20)
    failures: list[BaseException] = []
    acked: list[str] = []
    restarted, a_third = asyncio.Event(), asyncio.Event()

    async def publish_all() -> None:
        for n in range(COUNT):
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
        await asyncio.to_thread(stop, broker, signal.SIGKILL)  # publishes in flight meet it
        broker = await asyncio.to_thread(start_broker, tmp_path / "data", port)
        restarted.set()

    try:
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(publish_all())
            tasks.create_task(restart_midway())
        assert restarted.is_set()
        assert failures == [], f"{len(failures)} publishes failed, e.g. {failures[:1]}"
        delivered: list[str] = []
        sub = await transport.subscribe("orders", group="audit", prefetch=256)
        async with asyncio.timeout(20):
            async for delivery in sub:
                delivered.append(delivery.message.id)
                await sub.ack(delivery)
                if set(acked) <= set(delivered):
                    break
        await sub.close()
        assert set(acked) <= set(delivered), f"{len(set(acked) - set(delivered))} lost"
        duplicates = len(delivered) - len(set(delivered))
        assert duplicates <= 5, f"{duplicates} stored twice: more than the publishes in flight"
    finally:
        await transport.close()
        await asyncio.to_thread(stop, broker, signal.SIGTERM)
