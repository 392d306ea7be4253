"""``python -m benchmarks.outbox``: outbox relay throughput beside a direct publish (issue 19).

Same messages, same transport, same process, one after the other, per round:

* **direct publish**: the messages published straight to the transport, 64
  aggregates in flight, each aggregate's messages one after the other (what
  the relays do, without a database): the ceiling a relay can reach;
* **polling relay**: the messages committed to a PostgreSQL outbox table
  first (untimed, transactions of 10), then :class:`PollingRelay` publishes
  and deletes them (batches of 500, window 64);
* **log tailing relay**: the same, committed after the relay's slot was made,
  then :class:`LogTailingRelay` reads them from the WAL, publishes and deletes
  them (batches of 2,000 decoded messages, window 64);
* for comparison, the polling relay on a SQLite outbox.

Figures are rows (messages) published per second, median of ``--rounds``
rounds (the order of the four turns from round to round), on two
transports: the embedded broker (a fresh directory, fsync in batches), a
durable publish as in production, where the broker's own rate is the
ceiling; and ``memory://``, where the relays' own cost shows. PostgreSQL is a private
cluster started for the run (``wal_level = logical``, fsync on; see
``tests/pg_cluster.py``), stopped and removed at the end. Messages carry
~100-byte payloads, over 1,000 aggregates.

The machine is shared and noisy: compare the ratios.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

from tests.brokers import free_port
from tests.pg_cluster import logical_cluster

from seawall import ChannelSpec, Event, MemoryTransport, Message, System, Transport
from seawall.outbox import LogTailingRelay, Outbox, PollingRelay, PostgresOutbox, SQLiteOutbox
from seawall.outbox._relay import RelayStats, publish_in_order
from seawall.outbox._rows import message_of, row_for
from seawall.transports import EmbeddedTransport

AGGREGATES = 1000
PER_TRANSACTION = 10
WINDOW = 64
NOTE = "x" * 80


class Moved(Event, frozen=True):
    type_name = "bench.Moved"
    n: int
    note: str


async def fill(outbox: Outbox[Any], channel: str, count: int) -> list[Message]:
    """Commit ``count`` messages to the outbox; the messages, as the relays will read them."""
    messages: list[Message] = []
    async with System(transport=MemoryTransport()) as system:
        ctx = system.context("bench")
        for start in range(0, count, PER_TRANSACTION):
            async with outbox.transaction(ctx) as tx:
                for n in range(start, min(count, start + PER_TRANSACTION)):
                    key = f"agg-{n % AGGREGATES}"
                    await tx.publish(Moved(n=n, note=NOTE), channel=channel, key=key)
                messages += [message_of(row) for row in tx.outgoing]
    return messages


async def timed(count: int, work: Callable[[], Awaitable[int]]) -> float:
    started = time.perf_counter()
    done = await work()
    seconds = time.perf_counter() - started
    assert done == count, f"published {done} of {count}"
    return count / seconds


async def direct(transport: Transport, messages: list[Message], channel: str) -> float:
    rows = [row_for(m, channel=channel, aggregate_type=channel, partitions=16) for m in messages]

    async def publish() -> int:
        stats = RelayStats()
        for start in range(0, len(rows), 500):
            await publish_in_order(transport, rows[start : start + 500], window=WINDOW, stats=stats)
        return stats.published

    return await timed(len(rows), publish)


async def polling(outbox: Outbox[Any], transport: Transport, channel: str, count: int) -> float:
    await fill(outbox, channel, count)
    relay = PollingRelay(outbox, transport, batch=500, window=WINDOW)
    return await timed(count, relay.drain)


async def tailing(
    url: str, outbox: PostgresOutbox, transport: Transport, channel: str, count: int
) -> float:
    relay = await LogTailingRelay.open(
        url, transport, prefix=outbox.prefix, batch=2000, window=WINDOW
    )
    try:
        await fill(outbox, channel, count)
        return await timed(count, relay.drain)
    finally:
        await relay.drop()
        await relay.close()


async def one_round(url: str, transport: Transport, count: int, n: int) -> dict[str, float]:
    """Every mode once on ``transport``, in an order that turns with ``n``."""
    modes = ["direct", "polling", "tailing", "sqlite"]
    modes = modes[n % 4 :] + modes[: n % 4]
    for mode in modes:
        await transport.declare(ChannelSpec(name=f"bench.{mode}.{n}", max_messages=count * 2))
    figures: dict[str, float] = {}
    pg = await PostgresOutbox.open(url, prefix=f"r{n}_", max_connections=4)
    try:
        with tempfile.TemporaryDirectory(prefix="seawall-outbox-bench-") as tmp:
            for mode in modes:
                channel = f"bench.{mode}.{n}"
                if mode == "direct":
                    messages = await fill(pg, channel, count)
                    async with pg._pool.acquire() as conn:
                        await conn.execute(f"DELETE FROM {pg.prefix}outbox")
                    figures[mode] = await direct(transport, messages, channel)
                elif mode == "polling":
                    figures[mode] = await polling(pg, transport, channel, count)
                elif mode == "tailing":
                    figures[mode] = await tailing(url, pg, transport, channel, count)
                else:
                    async with await SQLiteOutbox.open(Path(tmp) / "sqlite.db") as sqlite:
                        figures[mode] = await polling(sqlite, transport, channel, count)
    finally:
        await pg.drop()
        await pg.close()
    return figures


async def rounds(
    url: str, data: Path, count: int, rounds: int, embedded: bool
) -> list[dict[str, float]]:
    transport: Transport = (
        EmbeddedTransport(str(data / "broker")) if embedded else MemoryTransport()
    )
    try:
        warm = [m async for m in _warm_up(count // 10)]
        await transport.declare(ChannelSpec(name="bench.warm-up", max_messages=count))
        await direct(transport, warm, "bench.warm-up")
        return [await one_round(url, transport, count, n) for n in range(rounds)]
    finally:
        await transport.close()


async def _warm_up(count: int) -> AsyncIterator[Message]:
    async with System(transport=MemoryTransport()) as system:
        ctx = system.context("bench")
        for n in range(count):
            yield ctx.envelope(Moved(n=n, note=NOTE), key=f"agg-{n % AGGREGATES}")


def show(title: str, samples: list[dict[str, float]]) -> None:
    median = {key: statistics.median(s[key] for s in samples) for key in samples[0]}
    anchor = median["direct"]
    print(title)
    for label, key in (
        ("direct publish (no database)", "direct"),
        ("polling relay, PostgreSQL", "polling"),
        ("log tailing relay, PostgreSQL", "tailing"),
        ("polling relay, SQLite", "sqlite"),
    ):
        figure = median[key]
        print(f"  {label:<32} {figure:>9,.0f} rows/s  {figure / anchor:5.2f}x of direct")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.outbox", description=__doc__)
    parser.add_argument("--count", type=int, default=20_000, help="messages per round")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    print(
        f"{args.count:,} messages over {AGGREGATES:,} aggregates (~100-byte payloads), median of "
        f"{args.rounds} rounds, 64 aggregates in flight; PostgreSQL: a private cluster, "
        f"wal_level=logical, fsync on; load average {os.getloadavg()[0]:.1f} on "
        f"{os.cpu_count()} cores at the start"
    )
    with (
        tempfile.TemporaryDirectory(prefix="seawall-outbox-bench-") as tmp,
        logical_cluster(free_port(), fsync=True) as cluster,
    ):
        embedded = asyncio.run(rounds(cluster.url, Path(tmp), args.count, args.rounds, True))
        memory = asyncio.run(rounds(cluster.url, Path(tmp), args.count, args.rounds, False))
    show("to the embedded broker (a durable publish: what a relay does in production)", embedded)
    show("to memory:// (no broker cost: the relays' own ceiling)", memory)
    print(f"load average {os.getloadavg()[0]:.1f} at the end")


if __name__ == "__main__":
    main()
