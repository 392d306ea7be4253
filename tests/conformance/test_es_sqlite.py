"""The SQLite event store: the shared conformance suite, plus what only it promises
(gap-free, dense positions from its single writer; group commit; reopening)."""

from __future__ import annotations

import asyncio
import sqlite3
import sys
from pathlib import Path

import pytest

from seawall import ConfigurationError, EventStoreError
from seawall.es import EventStore, SQLiteEventStore
from seawall.testing import EventStoreConformance
from seawall.testing._event_store import new_events

ROOT = Path(__file__).resolve().parents[2]


class TestSQLiteEventStore(EventStoreConformance):
    @pytest.fixture(autouse=True)
    def _tmp(self, tmp_path: Path) -> None:
        self.tmp = tmp_path

    async def make_store(self) -> EventStore:
        return await SQLiteEventStore.open(self.tmp / "events.db")


async def test_positions_are_dense_under_concurrent_writers_and_conflicts(tmp_path: Path) -> None:
    async with await SQLiteEventStore.open(tmp_path / "e.db") as store:
        results = await asyncio.gather(
            *(store.append(f"s-{n % 7}", new_events(3), 0) for n in range(50)),
            return_exceptions=True,
        )
        assert sum(isinstance(r, int) for r in results) == 7
        positions = [e.position for e in await store.read_all(limit=1000)]
        assert positions == list(range(1, 22))


async def test_reopened_store_keeps_events(tmp_path: Path) -> None:
    async with await SQLiteEventStore.open(tmp_path / "e.db", sync="normal") as store:
        await store.append("s", new_events(2), 0)
    async with await SQLiteEventStore.open(tmp_path / "e.db") as store:
        assert await store.append("s", new_events(1), 2) == 3
        assert await store.head() == 3


async def test_table_prefixes_keep_stores_apart(tmp_path: Path) -> None:
    path = tmp_path / "e.db"
    async with (
        await SQLiteEventStore.open(path, prefix="one_") as one,
        await SQLiteEventStore.open(path, prefix="two_") as two,
    ):
        await one.append("s", new_events(2), 0)
        assert await two.read_all() == []
        assert len(await one.read_all()) == 2


def test_bad_settings_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="prefix"):
        SQLiteEventStore(tmp_path / "e.db", prefix="x; DROP")
    with pytest.raises(ConfigurationError, match="sync"):
        SQLiteEventStore(tmp_path / "e.db", sync="off")  # type: ignore[arg-type]


async def test_unopenable_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(EventStoreError, match=r"cannot open|unable to open"):
        await SQLiteEventStore.open(tmp_path / "missing-dir" / "e.db")


async def test_a_cancelled_group_leader_strands_no_other_append(tmp_path: Path) -> None:
    async with await SQLiteEventStore.open(tmp_path / "e.db") as store:
        tasks = [asyncio.create_task(store.append(f"s{n}", new_events(1), 0)) for n in range(20)]
        await asyncio.sleep(0)  # every task queued; the first one leads the commit
        tasks[0].cancel()
        results = await asyncio.gather(*tasks, return_exceptions=True)
        assert isinstance(results[0], asyncio.CancelledError)
        assert results[1:] == [1] * 19
        # a cancelled append may still be committed (by its batch, or by the next leader)
        assert len(await store.read_all()) == 20


async def test_processes_sharing_a_file_get_dense_positions(tmp_path: Path) -> None:
    db = tmp_path / "e.db"
    async with await SQLiteEventStore.open(db) as store:
        children = [
            await asyncio.create_subprocess_exec(
                sys.executable, "-m", "tests.apps.es_appender", str(db), f"p{n}", "150", cwd=ROOT
            )
            for n in range(2)
        ]
        for version in range(150):
            await store.append("parent", new_events(1), version)
        assert [await child.wait() for child in children] == [0, 0]
        everything = await store.read_all(limit=1000)
    assert [e.position for e in everything] == list(range(1, 451))
    for stream in ("parent", "p0", "p1"):
        assert [e.version for e in everything if e.stream == stream] == list(range(1, 151))


async def test_a_failing_database_is_an_event_store_error_for_every_appender(
    tmp_path: Path,
) -> None:
    db = tmp_path / "e.db"
    async with await SQLiteEventStore.open(db) as store:
        await store.append("s", new_events(1), 0)
        with sqlite3.connect(db) as vandal:
            vandal.execute("DROP TABLE events")
        results = await asyncio.gather(
            *(store.append(f"t{n}", new_events(1), 0) for n in range(5)), return_exceptions=True
        )
        assert all(isinstance(r, EventStoreError) for r in results), results
        assert "no such table" in str(results[0])
        assert str(db) in str(results[0])


async def test_a_closed_store_says_so(tmp_path: Path) -> None:
    store = await SQLiteEventStore.open(tmp_path / "e.db")
    await store.close()
    await store.close()  # twice is fine
    with pytest.raises(EventStoreError, match="closed"):
        await store.append("s", new_events(1), 0)
    with pytest.raises(EventStoreError, match="closed"):
        await store.read_all()
    with pytest.raises(EventStoreError, match="closed"):
        await store.commit_projection("p", 0, 0, [])
