"""Projections: catch-up then live, rebuild from 0 or from a time, lag, one runner
per checkpoint, and exactly-once across a SIGKILL of a projection mid-batch."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from tests.apps.es_projection_child import Applied, Tick

from seawall import ConcurrencyError, Event, EventLoadError
from seawall.es import (
    Batch,
    EventCodec,
    NewEvent,
    Projection,
    ProjectionRunner,
    RecordedEvent,
    SQLiteEventStore,
)
from seawall.testing._delivery import wait_until

ROOT = Path(__file__).resolve().parents[3]


class Other(Event, frozen=True):
    type_name = "test.Other"


class Totals(Projection):
    name = "totals"
    handles = (Tick,)

    def __init__(self) -> None:
        self.external: dict[int, int] = {}  # an outside read model: at-least-once, idempotent

    def setup(self, batch: Batch) -> None:
        batch.execute("CREATE TABLE IF NOT EXISTS totals (stream TEXT PRIMARY KEY, sum INTEGER)")

    def reset(self, batch: Batch, from_position: int) -> None:
        batch.execute("DELETE FROM totals")

    async def handle(self, event: object, record: RecordedEvent, batch: Batch) -> None:
        assert isinstance(event, Tick)
        self.external[record.position] = event.n
        batch.execute(
            "INSERT INTO totals VALUES (?, ?) ON CONFLICT (stream) DO UPDATE "
            "SET sum = sum + excluded.sum",
            record.stream,
            event.n,
        )


@pytest_asyncio.fixture
async def store(tmp_path: Path) -> AsyncIterator[SQLiteEventStore]:
    async with await SQLiteEventStore.open(tmp_path / "e.db") as opened:
        yield opened


CODEC = EventCodec(Tick, Other)


async def append_ticks(store: SQLiteEventStore, stream: str, values: list[int]) -> None:
    version = len(await store.read_stream(stream))
    await store.append(stream, [CODEC.encode(Tick(n=n)) for n in values], version)


async def test_catch_up_applies_each_event_and_skips_other_types(store: SQLiteEventStore) -> None:
    await append_ticks(store, "a", [1, 2, 3])
    await store.append("b", [CODEC.encode(Other())], 0)
    await append_ticks(store, "c", [10])
    runner = ProjectionRunner(store, CODEC, Totals(), batch=2)
    progress: list[tuple[int, int]] = []
    assert await runner.catch_up(lambda done, total: progress.append((done, total))) == 5
    assert progress[-1] == (5, 5)
    assert await store.query("SELECT stream, sum FROM totals ORDER BY stream") == [
        ("a", 6),
        ("c", 10),
    ]
    status = await runner.status()
    assert (status.checkpoint, status.head, status.lag) == (5, 5, 0)
    await append_ticks(store, "a", [4])
    assert (await runner.status()).lag == 1
    assert await runner.catch_up() == 1
    assert await store.query("SELECT sum FROM totals WHERE stream = 'a'") == [(10,)]


async def test_run_follows_live_appends(store: SQLiteEventStore) -> None:
    await append_ticks(store, "a", [1])
    projection = Totals()
    runner = ProjectionRunner(store, CODEC, projection)
    task = asyncio.create_task(runner.run())
    try:
        await wait_until(lambda: 1 in projection.external, 10, "the catch-up")
        await append_ticks(store, "a", [2, 3])
        await wait_until(lambda: 3 in projection.external, 10, "the live events")
        for _ in range(1000):  # the commit follows the handler; bounded
            if await store.checkpoint("totals") == 3:
                break
            await asyncio.sleep(0.01)
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert await store.query("SELECT sum FROM totals") == [(6,)]


async def test_rebuild_from_zero_and_from_a_time(store: SQLiteEventStore) -> None:
    await append_ticks(store, "a", [1, 2])
    runner = ProjectionRunner(store, CODEC, Totals())
    await runner.catch_up()
    cut = time.time()
    await asyncio.sleep(0.01)
    await append_ticks(store, "a", [100])
    await runner.catch_up()
    assert await store.query("SELECT sum FROM totals") == [(103,)]
    assert await runner.rebuild() == 3
    assert await store.query("SELECT sum FROM totals") == [(103,)]  # not doubled
    assert await runner.rebuild(from_time=cut) == 1
    assert await store.query("SELECT sum FROM totals") == [(100,)]  # only what came after
    assert (await runner.status()).checkpoint == 3


async def test_a_second_runner_cannot_move_a_checkpoint_it_did_not_read(
    store: SQLiteEventStore,
) -> None:
    await append_ticks(store, "a", [1, 2])
    first = ProjectionRunner(store, CODEC, Totals())
    await first.catch_up()
    with pytest.raises(ConcurrencyError, match="projection totals"):
        await store.commit_projection("totals", 0, 2, [])
    assert await store.query("SELECT sum FROM totals") == [(3,)]


async def test_crash_before_commit_redelivers_to_outside_read_models(
    store: SQLiteEventStore,
) -> None:
    await append_ticks(store, "a", [1, 2, 3])

    class Failing(Totals):
        async def handle(self, event: object, record: RecordedEvent, batch: Batch) -> None:
            await super().handle(event, record, batch)
            if record.position == 3:
                raise RuntimeError("boom")

    failing = Failing()
    with pytest.raises(RuntimeError):
        await ProjectionRunner(store, CODEC, failing).catch_up()
    assert failing.external == {1: 1, 2: 2, 3: 3}  # outside effects happened...
    assert await store.checkpoint("totals") == 0  # ...but nothing was committed
    retry = Totals()
    await ProjectionRunner(store, CODEC, retry).catch_up()
    assert retry.external == {1: 1, 2: 2, 3: 3}  # handled again: at-least-once
    assert await store.query("SELECT sum FROM totals") == [(6,)]  # in-store: exactly once


def child(db: Path, marker: Path, stall_at: int) -> subprocess.Popen[bytes]:
    args = [str(db), str(marker), str(stall_at)]
    with (db.parent / "child.log").open("ab") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "tests.apps.es_projection_child", *args], cwd=ROOT, stderr=log
        )


def kill(proc: subprocess.Popen[bytes]) -> None:
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)


async def test_projection_killed_mid_batch_applies_every_event_exactly_once(
    tmp_path: Path,
) -> None:
    db, marker, count = tmp_path / "e.db", tmp_path / "stalled", 600
    async with await SQLiteEventStore.open(db) as store:
        for start in range(0, count, 50):
            await append_ticks(store, f"s-{start}", list(range(start, start + 50)))
    # 1. killed for sure in the middle of a batch (position 130 of the batch 121..160)
    proc = child(db, marker, stall_at=130)
    deadline = time.monotonic() + 20
    while not marker.exists():
        assert proc.poll() is None, (db.parent / "child.log").read_text()
        assert time.monotonic() < deadline, "the projection never reached position 130"
        await asyncio.sleep(0.01)
    kill(proc)
    async with await SQLiteEventStore.open(db) as store:  # batches of 40: 3 committed, 1 lost
        assert await store.checkpoint(Applied.name) == 120
        assert await store.query("SELECT count(*) FROM applied") == [(120,)]
    # 2. killed at random moments: before, inside and after commits
    rng, killed = random.Random(5), 0
    for _ in range(6):
        marker.unlink(missing_ok=True)
        proc = child(db, marker, stall_at=0)
        deadline = time.monotonic() + 20
        while not marker.exists() and proc.poll() is None:  # until it handles events
            assert time.monotonic() < deadline, "the projection never started handling"
            await asyncio.sleep(0.005)
        await asyncio.sleep(rng.uniform(0.0, 0.25))
        if proc.poll() is None:
            kill(proc)
            killed += 1
    assert killed >= 3
    # 3. run to the end
    proc = child(db, marker, stall_at=0)
    assert proc.wait(timeout=30) == 0, (db.parent / "child.log").read_text()
    async with await SQLiteEventStore.open(db) as store:
        rows = await store.query("SELECT position, count(*) FROM applied GROUP BY position")
        assert dict(rows) == dict.fromkeys(range(1, count + 1), 1)
        assert await store.query("SELECT n FROM total") == [(count,)]
        assert await store.checkpoint(Applied.name) == count


async def test_an_unreadable_event_stops_the_projection_without_moving_on(
    store: SQLiteEventStore,
) -> None:
    await append_ticks(store, "a", [1])
    await store.append("a", [NewEvent("bad", "test.Tick", "1.0.0", b'{"n": "one"}')], 1)
    await append_ticks(store, "a", [3])
    runner = ProjectionRunner(store, CODEC, Totals(), batch=10)
    with pytest.raises(EventLoadError, match="stream 'a' at position 2"):
        await runner.catch_up()
    assert await store.checkpoint("totals") == 0  # nothing skipped, nothing half-applied
