"""A process that publishes and consumes through a durable broker until killed.

Used by the crash tests, which kill it with SIGKILL at a random moment. It prints
``P <n>`` once the publish of message ``n`` was acknowledged and ``C <n>`` when
message ``n`` is delivered (before acking it), each line flushed at once, so the
test knows exactly what was acknowledged before the kill.

    python -m tests.apps.crash_child URL FIRST COUNT [IDLE]

publishes ``FIRST`` .. ``FIRST + COUNT - 1`` (32 in flight) while consuming as
group ``checker``; with ``IDLE`` it exits cleanly once nothing was delivered for
that many seconds after publishing finished.
"""

from __future__ import annotations

import asyncio
import sys

from seawall import ChannelSpec, Message, Transport, uuid7
from seawall.transports import connect

CHANNEL = "crash.stream"


def out(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


async def publish(transport: Transport, first: int, count: int) -> None:
    window = asyncio.Semaphore(32)

    async def one(n: int) -> None:
        try:
            message = Message(id=uuid7(), type="crash.Item", source="crash", data=str(n).encode())
            await transport.publish(CHANNEL, message)
            out(f"P {n}")
        finally:
            window.release()

    async with asyncio.TaskGroup() as group:
        for n in range(first, first + count):
            await window.acquire()  # at most 32 publishes wait for their ack at a time
            group.create_task(one(n))


async def consume(transport: Transport, idle: float | None, published: asyncio.Event) -> None:
    sub = await transport.subscribe(CHANNEL, group="checker", prefetch=64)
    loop = asyncio.get_running_loop()
    last = loop.time()

    async def pump() -> None:
        nonlocal last
        async for delivery in sub:
            out(f"C {int(delivery.message.data)}")
            await sub.ack(delivery)
            last = loop.time()

    async with asyncio.TaskGroup() as group:
        group.create_task(pump())
        # polls for a quiet period, which no event marks
        while idle is None or not published.is_set() or loop.time() - last < idle:  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        await sub.close()


async def main(url: str, first: int, count: int, idle: float | None) -> None:
    transport = connect(url)
    await transport.declare(ChannelSpec(name=CHANNEL, max_messages=1_000_000))
    published = asyncio.Event()
    try:
        async with asyncio.TaskGroup() as group:
            group.create_task(consume(transport, idle, published))
            await publish(transport, first, count)
            published.set()
            out("published")
    finally:
        await transport.close()


if __name__ == "__main__":
    idle = float(sys.argv[4]) if len(sys.argv) > 4 else None
    asyncio.run(main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), idle))
