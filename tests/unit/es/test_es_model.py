"""Repository, codec and store-URL edges: nothing to save, snapshots without a snapshot
type, automatic registration, empty appends, URLs, and live reads across stores."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from seawall import ConfigurationError, Event
from seawall.es import (
    Aggregate,
    EventCodec,
    ProjectionSet,
    RecordedEvent,
    Repository,
    SnapshotPolicy,
    SQLiteEventStore,
    open_store,
)

ROOT = Path(__file__).resolve().parents[3]


class Noted(Event, frozen=True):
    type_name = "model.Noted"
    text: str


class Note(Aggregate):
    def __init__(self, id: str) -> None:
        super().__init__(id)
        self.texts: list[str] = []

    def apply(self, event: Any) -> None:
        self.texts.append(event.text)


@pytest_asyncio.fixture
async def store(tmp_path: Path) -> AsyncIterator[SQLiteEventStore]:
    async with await SQLiteEventStore.open(tmp_path / "e.db") as opened:
        yield opened


async def test_saving_nothing_appends_nothing(store: SQLiteEventStore) -> None:
    repo = Repository(store, EventCodec(Noted))
    note = Note("n")
    assert await repo.save(note) == 0
    note.record(Noted(text="a"))
    assert await repo.save(note) == 1
    assert note.pending == ()
    assert await repo.save(note) == 1
    assert await store.head() == 1


async def test_snapshot_policy_skips_aggregates_without_a_snapshot_type(
    store: SQLiteEventStore,
) -> None:
    repo = Repository(store, EventCodec(Noted), snapshots=SnapshotPolicy(every=1))
    note = Note("n")
    note.record(Noted(text="a"), Noted(text="b"))
    await repo.save(note)
    assert await store.load_snapshot(note.stream) is None
    assert (await repo.load(Note, "n")).texts == ["a", "b"]
    with pytest.raises(ConfigurationError, match="has no snapshot_type"):
        await repo.snapshot(note)


def test_codec_registers_on_encode_and_keeps_given_ids() -> None:
    codec = EventCodec()
    new = codec.encode(Noted(text="x"), id="e-1")
    assert (new.id, new.type, new.type_version) == ("e-1", "model.Noted", "1.0.0")
    record = RecordedEvent(1, "s", 1, new.id, new.type, new.type_version, 0.0, new.data)
    assert codec.decode(record) == Noted(text="x")
    assert codec.encode(Noted(text="x")).id != codec.encode(Noted(text="x")).id


async def test_an_empty_append_is_refused(store: SQLiteEventStore) -> None:
    with pytest.raises(ConfigurationError, match="no events"):
        await store.append("s", [], 0)


async def test_open_store_by_url(tmp_path: Path) -> None:
    opened = await open_store(f"sqlite://{tmp_path / 'u.db'}")
    try:
        assert isinstance(opened, SQLiteEventStore)
        assert await opened.head() == 0
    finally:
        await opened.close()
    with pytest.raises(ConfigurationError, match="not understood"):
        await open_store("mysql://db")
    with pytest.raises(ConfigurationError, match="not understood"):
        await open_store("sqlite://")


def test_projection_set_names_what_it_knows() -> None:
    found = ProjectionSet(EventCodec(), ())
    with pytest.raises(ConfigurationError, match="known: none"):
        found.find("x")


async def test_a_subscriber_sees_appends_made_by_another_process(
    store: SQLiteEventStore, tmp_path: Path
) -> None:
    seen: list[RecordedEvent] = []

    async def follow() -> None:
        async for event in store.subscribe():
            seen.append(event)
            if len(seen) == 20:
                return

    async with asyncio.timeout(20):
        reader = asyncio.create_task(follow())
        child = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "tests.apps.es_appender", store.path, "other", "20", cwd=ROOT
        )
        assert await child.wait() == 0
        await reader
    assert [e.version for e in seen] == list(range(1, 21))
    assert {e.stream for e in seen} == {"other"}
