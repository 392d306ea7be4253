"""The event-store conformance suite: the contract every event-store backend passes.

Each backend's test module subclasses :class:`EventStoreConformance` and
supplies a factory for a fresh, empty store and a way to dispose of it::

    class TestSQLiteEventStore(EventStoreConformance):
        async def make_store(self) -> EventStore:
            return await SQLiteEventStore.open(self.tmp / "events.db")

The tests run on real time with bounded waits, so they run unchanged against a
shared database server (give each store its own schema or table prefix).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
import pytest_asyncio

from .._exceptions import AggregateNotFound, ConcurrencyError, EventLoadError, StaleEpoch
from .._messages.payload import Document, Event
from .._transport.ownership import Fence
from ..es import (
    Aggregate,
    EventCodec,
    EventStore,
    NewEvent,
    ProjectionWrite,
    RecordedEvent,
    Repository,
    SnapshotPolicy,
    SnapshotRecord,
)

__all__ = ["EventStoreConformance", "new_events"]


def new_events(count: int, *, size: int = 16, type: str = "conformance.Happened") -> list[NewEvent]:
    """``count`` distinct events with payloads of ``size`` bytes."""
    return [
        NewEvent(str(uuid.uuid4()), type, "1.0.0", f'{{"n":{i},"pad":"{"x" * size}"}}'.encode())
        for i in range(count)
    ]


class _Deposited(Event, frozen=True):
    type_name = "conformance.Deposited"
    amount: Decimal


class _State(Document, frozen=True):
    type_name = "conformance.AccountState"
    balance: Decimal
    opened: datetime


class _Account(Aggregate):
    category = "conformance-account"
    snapshot_type = _State

    def __init__(self, id: str) -> None:
        super().__init__(id)
        self.balance = Decimal(0)
        self.opened = datetime(2026, 1, 1, tzinfo=UTC)
        self.applied = 0

    def apply(self, event: Any) -> None:
        assert isinstance(event, _Deposited)
        self.balance += event.amount
        self.applied += 1

    def snapshot(self) -> _State:
        return _State(balance=self.balance, opened=self.opened)

    def restore(self, snapshot: Any) -> None:
        assert isinstance(snapshot, _State)
        self.balance, self.opened = snapshot.balance, snapshot.opened


class EventStoreConformance:
    """Base tests for an event store; subclasses provide :meth:`make_store`."""

    timeout = 10.0
    """Longest wait for something that must happen (a live event)."""

    async def read_all_of(self, store: EventStore, count: int) -> list[RecordedEvent]:
        """The whole log once ``count`` events are readable (a backend may hold committed
        events back while an older transaction is open, e.g. PostgreSQL's gap guard)."""
        deadline = time.monotonic() + self.timeout
        while len(events := await store.read_all(limit=100_000)) < count:
            assert time.monotonic() < deadline, f"only {len(events)} of {count} readable"
            await asyncio.sleep(0.01)
        return events

    async def make_store(self) -> EventStore:
        """A fresh, empty store; called once per test."""
        raise NotImplementedError

    async def dispose_store(self, store: EventStore) -> None:
        """Close the store and remove what it stored (tables, schema, file)."""
        await store.close()

    @pytest_asyncio.fixture
    async def store(self) -> AsyncIterator[EventStore]:
        made = await self.make_store()
        try:
            yield made
        finally:
            await self.dispose_store(made)

    # -- append and read ------------------------------------------------------------

    async def test_append_then_read_stream_in_order(self, store: EventStore) -> None:
        events = new_events(3)
        assert await store.append("s-1", events, 0) == 3
        read = await store.read_stream("s-1")
        assert [(e.version, e.id, e.type, e.type_version, e.data) for e in read] == [
            (i, n.id, n.type, n.type_version, n.data) for i, n in enumerate(events, 1)
        ]
        assert all(r.stream == "s-1" and r.time > 0 for r in read)
        assert [e.version for e in await store.read_stream("s-1", 2)] == [2, 3]
        assert await store.read_stream("missing") == []

    async def test_appends_continue_a_stream(self, store: EventStore) -> None:
        await store.append("s", new_events(2), 0)
        assert await store.append("s", new_events(2), 2) == 4
        assert [e.version for e in await store.read_stream("s")] == [1, 2, 3, 4]

    async def test_stale_expected_version_raises_and_stores_nothing(
        self, store: EventStore
    ) -> None:
        await store.append("s", new_events(2), 0)
        with pytest.raises(ConcurrencyError) as caught:
            await store.append("s", new_events(1), 1)
        assert (caught.value.stream, caught.value.expected, caught.value.actual) == ("s", 1, 2)
        assert "'s'" in str(caught.value)
        with pytest.raises(ConcurrencyError):
            await store.append("new", new_events(1), 3)
        assert len(await store.read_stream("s")) == 2
        assert await store.read_stream("new") == []
        assert len(await self.read_all_of(store, 2)) == 2

    async def test_concurrent_appends_to_one_stream_one_wins(self, store: EventStore) -> None:
        results = await asyncio.gather(
            *(store.append("race", new_events(2), 0) for _ in range(8)), return_exceptions=True
        )
        assert sum(r == 2 for r in results) == 1
        assert all(isinstance(r, ConcurrencyError) for r in results if r != 2)
        assert [e.version for e in await store.read_stream("race")] == [1, 2]

    async def test_read_all_in_global_order(self, store: EventStore) -> None:
        await store.append("a", new_events(2), 0)
        await store.append("b", new_events(1), 0)
        await store.append("a", new_events(1), 2)
        everything = await self.read_all_of(store, 4)
        assert [(e.stream, e.version) for e in everything] == [
            ("a", 1),
            ("a", 2),
            ("b", 1),
            ("a", 3),
        ]
        positions = [e.position for e in everything]
        assert positions == sorted(positions)
        assert len(set(positions)) == 4
        assert await store.read_all(after=positions[1], limit=1) == [everything[2]]
        assert await store.read_all(after=positions[-1]) == []
        assert await store.head() == positions[-1]

    async def test_many_concurrent_writers_every_event_once(self, store: EventStore) -> None:
        async def writer(n: int) -> None:
            for round_ in range(5):
                await store.append(f"w-{n}", new_events(2), round_ * 2)

        await asyncio.gather(*(writer(n) for n in range(20)))
        everything = await self.read_all_of(store, 200)
        assert len(everything) == 200
        assert len({e.id for e in everything}) == 200
        positions = [e.position for e in everything]
        assert positions == sorted(positions)
        for n in range(20):
            assert [e.version for e in everything if e.stream == f"w-{n}"] == list(range(1, 11))

    async def test_position_at_time(self, store: EventStore) -> None:
        await store.append("t", new_events(2), 0)
        middle = time.time()
        await asyncio.sleep(0.01)
        await store.append("t", new_events(1), 2)
        first_late = (await self.read_all_of(store, 3))[2]
        assert first_late.time >= middle
        assert await store.position_at(middle) == first_late.position - 1
        assert await store.position_at(time.time() + 60) == await store.head()

    # -- subscriptions ------------------------------------------------------------------

    async def test_subscribe_catches_up_then_follows_live(self, store: EventStore) -> None:
        await store.append("s", new_events(3), 0)
        seen: list[RecordedEvent] = []
        caught_up = asyncio.Event()

        async def read(count: int) -> None:
            async for event in store.subscribe(after=1, batch=2):
                seen.append(event)
                if len(seen) == 2:
                    caught_up.set()
                if len(seen) == count:
                    return

        async with asyncio.timeout(self.timeout):
            reader = asyncio.create_task(read(4))
            await caught_up.wait()  # the stored ones first
            await store.append("s", new_events(2), 3)
            await reader
        assert [e.version for e in seen] == [2, 3, 4, 5]

    # -- snapshots, checkpoints ------------------------------------------------------------

    async def test_snapshots_keep_the_latest(self, store: EventStore) -> None:
        assert await store.load_snapshot("s") is None
        await store.save_snapshot(SnapshotRecord("s", 5, "T", "1.0.0", b"{}"))
        await store.save_snapshot(SnapshotRecord("s", 10, "T", "1.0.0", b'{"a":1}'))
        await store.save_snapshot(SnapshotRecord("s", 7, "T", "1.0.0", b"{}"))  # older: ignored
        assert await store.load_snapshot("s") == SnapshotRecord("s", 10, "T", "1.0.0", b'{"a":1}')

    async def test_projection_commit_moves_checkpoint_with_its_writes(
        self, store: EventStore
    ) -> None:
        table = f"conformance_{uuid.uuid4().hex[:8]}"
        create = ProjectionWrite(f"CREATE TABLE {table} (n INTEGER)", ())
        insert = ProjectionWrite(f"INSERT INTO {table} (n) VALUES (1)", ())
        assert await store.checkpoint("p") == 0
        await store.commit_projection("p", 0, 5, [create, insert])
        assert await store.checkpoint("p") == 5
        with pytest.raises(ConcurrencyError):
            await store.commit_projection("p", 3, 9, [insert])
        await store.commit_projection("p", 5, 9, [insert])
        assert await store.checkpoints() == {"p": 9}
        assert await store.query(f"SELECT count(*) FROM {table}") == [(2,)]
        await store.commit_projection("p", 9, 9, [ProjectionWrite(f"DROP TABLE {table}", ())])

    # -- fencing: writes that depend on owning a partition ------------------------------------

    async def test_append_under_a_stale_epoch_is_refused(self, store: EventStore) -> None:
        scope = f"orders/billing/{uuid.uuid4().hex[:8]}"
        await store.append("f-1", new_events(1), 0, fence=Fence(scope, 4))
        await store.append("f-2", new_events(1), 0, fence=Fence(scope, 7))  # a new owner
        with pytest.raises(StaleEpoch) as caught:  # the old owner, back from a pause
            await store.append("f-1", new_events(1), 1, fence=Fence(scope, 4))
        assert (caught.value.scope, caught.value.epoch, caught.value.current) == (scope, 4, 7)
        assert len(await store.read_stream("f-1")) == 1  # nothing was written
        assert await store.append("f-1", new_events(1), 1, fence=Fence(scope, 7)) == 2
        await store.append("f-3", new_events(1), 0, fence=Fence(f"{scope}-other", 1))
        await store.append("f-4", new_events(1), 0)  # an unfenced write is not checked

    async def test_concurrent_fenced_appends_the_newer_epoch_wins(self, store: EventStore) -> None:
        scope = f"orders/billing/{uuid.uuid4().hex[:8]}"
        await store.append("g-0", new_events(1), 0, fence=Fence(scope, 2))
        new = store.append("g-new", new_events(1), 0, fence=Fence(scope, 3))
        old = store.append("g-old", new_events(1), 0, fence=Fence(scope, 2))
        results = await asyncio.gather(new, old, return_exceptions=True)
        # the older epoch may only land before the newer one, never after it
        assert results[0] == 1
        if isinstance(results[1], StaleEpoch):
            assert await store.read_stream("g-old") == []
        with pytest.raises(StaleEpoch):
            await store.append("g-later", new_events(1), 0, fence=Fence(scope, 2))

    async def test_projection_checkpoint_under_a_stale_epoch_is_refused(
        self, store: EventStore
    ) -> None:
        scope = f"projections/{uuid.uuid4().hex[:8]}"
        await store.commit_projection("fp", 0, 3, [], fence=Fence(scope, 1))
        await store.commit_projection("fp", 3, 5, [], fence=Fence(scope, 2))
        with pytest.raises(StaleEpoch):
            await store.commit_projection("fp", 5, 8, [], fence=Fence(scope, 1))
        assert await store.checkpoint("fp") == 5

    async def test_repository_save_carries_the_fence(self, store: EventStore) -> None:
        repo = Repository(store, EventCodec(_Deposited, _State))
        scope = f"accounts/{uuid.uuid4().hex[:8]}"
        account = _Account("fenced")
        account.record(_Deposited(amount=Decimal("1")))
        await repo.save(account, fence=Fence(scope, 9))
        account.record(_Deposited(amount=Decimal("2")))
        with pytest.raises(StaleEpoch):
            await repo.save(account, fence=Fence(scope, 8))

    # -- through a repository -----------------------------------------------------------------

    async def test_repository_round_trip_with_snapshots(self, store: EventStore) -> None:
        repo = Repository(store, EventCodec(_Deposited, _State), snapshots=SnapshotPolicy(every=4))
        account = _Account("a1")
        for amount in ("1.10", "2.20", "3.30"):
            account.record(_Deposited(amount=Decimal(amount)))
        await repo.save(account)
        assert await store.load_snapshot(account.stream) is None
        account.record(_Deposited(amount=Decimal("4.40")), _Deposited(amount=Decimal("5")))
        assert await repo.save(account) == 5
        snapshot = await store.load_snapshot(account.stream)
        assert snapshot is not None
        assert snapshot.version == 5
        loaded = await repo.load(_Account, "a1")
        assert (loaded.balance, loaded.version, loaded.applied) == (Decimal("16.00"), 5, 0)
        assert isinstance(loaded.balance, Decimal)
        assert loaded.opened.tzinfo is not None
        loaded.record(_Deposited(amount=Decimal("1")))
        await repo.save(loaded)
        again = await repo.load(_Account, "a1")
        assert (again.balance, again.version, again.applied) == (Decimal("17.00"), 6, 1)
        other = await repo.load(_Account, "a1")
        other.record(_Deposited(amount=Decimal("1")))
        await repo.save(other)
        loaded.record(_Deposited(amount=Decimal("1")))
        with pytest.raises(ConcurrencyError):
            await repo.save(loaded)  # loaded at 6, the stream is at 7 now
        with pytest.raises(AggregateNotFound):
            await repo.load(_Account, "nobody")

    async def test_unknown_type_on_load_names_it(self, store: EventStore) -> None:
        await store.append("conformance-account-x", new_events(1, type="gone.Type"), 0)
        with pytest.raises(EventLoadError) as caught:
            await Repository(store, EventCodec(_Deposited)).load(_Account, "x")
        error = caught.value
        assert (error.type_name, error.version, error.stream) == (
            "gone.Type",
            "1.0.0",
            "conformance-account-x",
        )
        assert error.position == (await self.read_all_of(store, 1))[0].position
