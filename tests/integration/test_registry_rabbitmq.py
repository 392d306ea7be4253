"""On RabbitMQ, the registry reader queues of a SIGKILLed process go by themselves.

A process reading the registry (its own reader group on both registry channels,
each a quorum queue) is killed with kill -9, so it never deletes them; RabbitMQ
deletes both once they have had no consumer for the group expiry (x-expires),
without any other reader having seen that process. The test gives the reader an
expiry of one second instead of minutes; RabbitMQ looks at a quorum queue's
expiry every 5 s.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import aio_pika
import pytest
import pytest_asyncio
from tests.brokers import RABBITMQ, require, unique

from seawall.discovery.channel import reader_group
from seawall.transports.rabbitmq import RabbitMQTransport
from seawall.transports.rabbitmq._layout import Layout

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]

READER = """
import asyncio, sys
from seawall._clock import SystemClock
from seawall.discovery.channel import RegistryReader
from seawall.transports.rabbitmq import RabbitMQTransport

async def main() -> None:
    url, channel, instance = sys.argv[1:4]
    transport = await RabbitMQTransport.connect(url)
    reader = RegistryReader(
        transport, SystemClock(), instance=instance, channel=channel, group_expiry=1.0
    )
    async with asyncio.TaskGroup() as tasks:
        tasks.create_task(reader.run())
        await reader.ready.wait()
        print("ready", flush=True)

asyncio.run(main())
"""


@pytest_asyncio.fixture
async def channel() -> AsyncIterator[str]:
    """A registry channel of this test's own; it and its known channel are deleted after."""
    name = unique("registry")
    yield name
    transport = await RabbitMQTransport.connect(require(RABBITMQ))
    try:
        await transport.delete(name)
        await transport.delete(name + ".known")
    finally:
        await transport.close()


async def present(queues: list[str]) -> list[str]:
    """Which of ``queues`` exist (asked passively, which does not keep them in use)."""
    connection = await aio_pika.connect(require(RABBITMQ))
    found = []
    async with connection:
        for queue in queues:
            probe = await connection.channel()
            try:
                await probe.declare_queue(queue, passive=True)
            except aio_pika.exceptions.ChannelNotFoundEntity:
                continue
            found.append(queue)
            await probe.close()
    return found


@pytest.mark.slow
async def test_reader_queues_of_a_process_killed_with_kill_9_expire(channel: str) -> None:
    url = require(RABBITMQ)
    instance = f"killed-{uuid.uuid4().hex[:8]}"
    group = reader_group(instance)
    queues = [Layout(channel, 1).queue(group, 0), Layout(channel + ".known", 1).queue(group, 0)]
    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'src'}:{ROOT}"}
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        READER,
        url,
        channel,
        instance,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        assert child.stdout is not None
        line = await asyncio.wait_for(child.stdout.readline(), 30)
        assert line.strip() == b"ready", line
        assert await present(queues) == queues, "the reader's queues were not made"
    finally:
        with contextlib.suppress(ProcessLookupError):
            child.send_signal(signal.SIGKILL)
        await child.wait()
    killed = time.monotonic()
    left = queues
    while left and time.monotonic() - killed < 15:
        await asyncio.sleep(0.5)
        left = await present(queues)
    assert left == [], f"still there {time.monotonic() - killed:.1f} s after the kill"
