"""``python -m benchmarks.redis_compare``: Redis Streams, seawall beside redis-py and FastStream.

One figure, end-to-end throughput (publish -> deliver -> decode -> ack), for
three clients in the same process and run, on the same server, with the same
~100-byte JSON payload decoded into a typed message and the same in-flight
window ``W`` (``--window``, default 64):

* **raw redis-py**: the publisher sends ``XADD`` in pipelines of ``W``; the
  consumer reads a consumer group with ``XREADGROUP COUNT W``, decodes each
  entry with msgspec into the typed struct, and acks each read with one ``XACK``;
* **seawall**: ``W`` publishers call ``RedisTransport.publish`` (concurrent
  publishes share round trips), a :class:`~seawall.Service` handler takes the
  typed event with ``concurrency=W`` (its acks share round trips too);
* **FastStream**: ``W`` publishers call ``broker.publish(stream=...)``, a
  ``StreamSub`` subscriber in a consumer group takes a pydantic model
  (``max_records=W``).

Each client runs ``--rounds`` rounds (default 5) of ``--count`` messages
(FastStream ``--count / 4``, being slower); the medians are printed with the
ratios to raw redis-py. The server is ``SEAWALL_BENCH_REDIS_URL`` (default
``redis://127.0.0.1:6379/0``); every key made here is deleted afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import logging
import os
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable

import msgspec
import redis.asyncio

from seawall import Service, System
from seawall._messages.envelope import Message
from seawall._messages.ids import uuid7
from seawall.transports.redis import RedisTransport

from .faststream_payload import ReadingModel
from .workloads import PAYLOAD, Reading

URL = os.environ.get("SEAWALL_BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
BODY = msgspec.json.encode(PAYLOAD)
decode = msgspec.json.Decoder(Reading).decode


async def raw(count: int, window: int) -> float:
    client = redis.asyncio.Redis.from_url(URL)
    stream = f"bench-raw-{uuid.uuid4().hex[:8]}"
    await client.xgroup_create(stream, "g", id="0", mkstream=True)

    async def publish() -> None:
        for start in range(0, count, window):
            async with client.pipeline(transaction=False) as pipe:
                for _ in range(min(window, count - start)):
                    pipe.xadd(stream, {"data": BODY})
                await pipe.execute()

    async def consume() -> None:
        done = 0
        while done < count:
            answer = await client.xreadgroup("g", "c", {stream: ">"}, count=window, block=1000)
            for _, entries in answer:
                ids = []
                for entry, fields in entries:
                    decode(fields[b"data"])
                    ids.append(entry)
                await client.xack(stream, "g", *ids)
                done += len(ids)

    try:
        return await timed(count, publish, consume)
    finally:
        await client.delete(stream)
        await client.aclose()


async def seawall(count: int, window: int) -> float:
    prefix = f"bench-{uuid.uuid4().hex[:8]}"
    name = "bench"
    transport = RedisTransport(URL, prefix=prefix)
    svc = Service(name, concurrency=window, prefetch=window)
    done = asyncio.Event()
    seen = 0

    @svc.command
    async def handle(reading: Reading) -> None:
        nonlocal seen
        seen += 1
        if seen == count:
            done.set()

    async def publish() -> None:
        await spread(count, window, lambda: transport.publish(name, envelope()))

    try:
        async with System(svc, transport=transport):
            return await timed(count, publish, done.wait)
    finally:
        await transport.close()
        await wipe(prefix)


async def faststream(count: int, window: int) -> float:
    from faststream.redis import RedisBroker, StreamSub

    stream = f"bench-fs-{uuid.uuid4().hex[:8]}"
    broker = RedisBroker(URL, logger=None)
    done = asyncio.Event()
    seen = 0

    @broker.subscriber(stream=StreamSub(stream, group="g", consumer="c", max_records=window))
    async def handle(reading: ReadingModel) -> None:
        nonlocal seen
        seen += 1
        if seen == count:
            done.set()

    payload = msgspec.json.decode(BODY)

    async def publish() -> None:
        await spread(count, window, lambda: broker.publish(payload, stream=stream))

    await broker.start()
    try:
        return await timed(count, publish, done.wait)
    finally:
        await broker.stop()
        client = redis.asyncio.Redis.from_url(URL)
        await client.delete(stream)
        await client.aclose()


def envelope() -> Message:
    return Message(id=uuid7(), type=Reading.type_name, source="bench", data=BODY, kind="command")


async def spread(count: int, window: int, send: Callable[[], Awaitable[object]]) -> None:
    """``count`` sends by ``window`` concurrent senders."""
    share, extra = divmod(count, window)

    async def sender(n: int) -> None:
        for _ in range(n):
            await send()

    async with asyncio.TaskGroup() as tasks:
        for i in range(window):
            tasks.create_task(sender(share + (i < extra)))


async def timed(
    count: int, publish: Callable[[], Awaitable[None]], consume: Callable[[], Awaitable[object]]
) -> float:
    gc.collect()  # the garbage of the previous client's run is not this one's to collect
    started = time.perf_counter()
    async with asyncio.TaskGroup() as tasks:
        tasks.create_task(publish())
        tasks.create_task(consume())
    return count / (time.perf_counter() - started)


async def wipe(prefix: str) -> None:
    client = redis.asyncio.Redis.from_url(URL)
    keys = [key async for key in client.scan_iter(match=f"{prefix}:*", count=1000)]
    if keys:
        await client.delete(*keys)
    await client.aclose()


async def main(args: argparse.Namespace) -> None:
    logging.getLogger("faststream").setLevel(logging.WARNING)
    rates: dict[str, list[float]] = {"raw redis-py": [], "seawall": [], "FastStream": []}
    for _ in range(args.rounds):  # interleaved, so drift on a shared machine hits all three
        rates["raw redis-py"].append(await raw(args.count, args.window))
        rates["seawall"].append(await seawall(args.count, args.window))
        with contextlib.suppress(ImportError):
            rates["FastStream"].append(await faststream(args.count // 4, args.window))
    medians = {name: statistics.median(r) for name, r in rates.items() if r}
    anchor = medians["raw redis-py"]
    print(
        f"Redis Streams pub -> sub -> decode -> ack, {len(BODY)}-byte JSON payload, "
        f"window {args.window}, median of {args.rounds} rounds ({args.count} messages each)"
    )
    print(
        "  durability, all three alike: a Redis Streams consumer group, each entry acked "
        "(XACK) after it is handled, kept as the server's appendfsync says"
    )
    for name, rate in medians.items():
        each = ", ".join(f"{r:,.0f}" for r in rates[name])
        print(f"  {name:<13} {rate:>9,.0f} msgs/s  {rate / anchor:.2f}x raw   ({each})")
    if "FastStream" in medians:
        print(f"  seawall / FastStream: {medians['seawall'] / medians['FastStream']:.1f}x")


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=20_000, help="messages per round")
    parser.add_argument("--window", type=int, default=64, help="in-flight window")
    parser.add_argument("--rounds", type=int, default=5, help="rounds per client")
    return parser.parse_args()


if __name__ == "__main__":
    asyncio.run(main(parse()))
