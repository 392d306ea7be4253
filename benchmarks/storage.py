"""Storage benchmarks: the store's append path against the raw limits of this machine.

Side by side, 100-byte bodies, records per second (median of ``repeats``):

* ``raw``: SQLite WAL, ``synchronous=FULL``, 1,000-row ``executemany``
  transactions into the store's own schema: the engine's limit, the anchor;
* ``raw multi-row``: the same with the store's multi-row INSERT statements;
* ``file``: a plain file with one fsync per 1,000 records: the disk's limit;
* ``writer <policy>``: :class:`~seawall._broker.store_writer.StoreWriter` appends from
  the event loop, ``window`` of them in flight, every future awaited.

Each measurement stops at ``count`` records or ``time_limit`` seconds. The
functions return plain figures so ``make bench`` can print them with the
others; ``python -m benchmarks.storage`` prints them alone.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sqlite3
import statistics
import tempfile
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from seawall._broker.store import OFFSET_BITS, SCHEMA, ChannelLayout, SyncPolicy, insert_entries
from seawall._broker.store_writer import StoreWriter

__all__ = ["Figure", "file_fsync", "raw_sqlite", "run", "writer_appends"]

BODY = b"r" * 100
CHUNK = 1000
"""Records per transaction (raw) or per fsync (file)."""


@dataclass(frozen=True)
class Figure:
    """One benchmark's median rate and its ratio to the raw SQLite anchor."""

    label: str
    rate: float
    """records/s, median of the repeats"""
    ratio: float
    """median over the rounds of rate / raw anchor rate in the same round"""


def _rate(records: int, seconds: float) -> float:
    return records / seconds if seconds > 0 else 0.0


def raw_sqlite(path: Path, count: int, time_limit: float, multi_row: bool = False) -> float:
    """Records/s of 1,000-row transactions straight into the store's schema.

    ``executemany`` of one-row INSERTs, or with ``multi_row`` the store's own
    multi-row INSERT statements (the limit of the technique the store uses).
    """
    db = sqlite3.connect(path / "raw.db", isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    db.executescript(SCHEMA)
    prefix = 1 << OFFSET_BITS
    now, done = time.time(), 0
    start = time.perf_counter()
    while done < count and time.perf_counter() - start < time_limit:
        rows = [(prefix + done + i, now, BODY) for i in range(CHUNK)]
        db.execute("BEGIN")
        if multi_row:
            insert_entries(db, 0, rows)
        else:
            db.executemany("INSERT INTO entries VALUES (?, ?, ?)", rows)
        db.execute("COMMIT")
        done += CHUNK
    rate = _rate(done, time.perf_counter() - start)
    db.close()
    return rate


def file_fsync(path: Path, count: int, time_limit: float) -> float:
    """Records/s appended to a plain file with one fsync per 1,000 records."""
    chunk = BODY * CHUNK
    done = 0
    start = time.perf_counter()
    with open(path / "plain.log", "ab", buffering=0) as file:
        while done < count and time.perf_counter() - start < time_limit:
            file.write(chunk)
            os.fsync(file.fileno())
            done += CHUNK
    return _rate(done, time.perf_counter() - start)


def writer_appends(
    path: Path, count: int, time_limit: float, policy: SyncPolicy, window: int = 4096
) -> float:
    """Records/s through StoreWriter.append, ``window`` futures in flight, each awaited."""

    async def appends() -> float:
        async with StoreWriter(path / "store", policy=policy) as writer:
            await writer.declare("bench", ChannelLayout(partitions=1, max_messages=count))
            in_flight: deque[asyncio.Future[None]] = deque()
            now, done = time.time(), 0
            start = time.perf_counter()
            while done < count and (done % 1024 or time.perf_counter() - start < time_limit):
                if writer.full:
                    await writer.room()
                in_flight.append(writer.append("bench", 0, done, now, BODY))
                done += 1
                if len(in_flight) >= window:
                    await in_flight.popleft()
            for future in in_flight:
                await future
            return _rate(done, time.perf_counter() - start)

    return asyncio.run(appends())


def _measure(measure: Callable[[Path], float]) -> float:
    with tempfile.TemporaryDirectory(prefix="seawall-bench-") as tmp:
        return measure(Path(tmp))


def run(count: int = 200_000, repeats: int = 3, time_limit: float = 2.0) -> list[Figure]:
    """Every storage figure, measured in one run; ratios are to the raw SQLite anchor.

    Repeats are interleaved (every benchmark once per round) and a ratio is the
    median of the per-round ratios, so load from other processes that comes and
    goes skews the anchor and the measured path alike.
    """
    measures: dict[str, Callable[[Path], float]] = {
        "raw SQLite WAL, 1,000-row txns, synchronous=FULL": lambda p: raw_sqlite(
            p, count, time_limit
        ),
        "raw SQLite, the same with multi-row INSERTs": lambda p: raw_sqlite(
            p, count, time_limit, multi_row=True
        ),
        "plain file, fsync per 1,000 records": lambda p: file_fsync(p, count, time_limit),
    }
    for policy in ("batch", "always", "none"):
        measures[f"StoreWriter.append, policy {policy}"] = (
            lambda p, policy=policy: writer_appends(p, count, time_limit, policy)  # type: ignore[misc]
        )
    rounds = [{label: _measure(m) for label, m in measures.items()} for _ in range(repeats)]
    anchor = next(iter(measures))
    return [
        Figure(
            label,
            statistics.median(r[label] for r in rounds),
            statistics.median(r[label] / r[anchor] for r in rounds),
        )
        for label in measures
    ]


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.storage")
    parser.add_argument("--count", type=int, default=200_000, help="records per measurement")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--time-limit", type=float, default=2.0, help="seconds per measurement")
    args = parser.parse_args()
    print(f"storage, 100-byte bodies, median of {args.repeats}")
    for figure in run(args.count, args.repeats, args.time_limit):
        print(f"  {figure.label:<52} {figure.rate:>12,.0f} records/s  {figure.ratio:5.2f}x raw")


if __name__ == "__main__":
    main()
