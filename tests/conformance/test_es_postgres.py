"""The PostgreSQL event store against the real server: the conformance suite and
the gap test (many concurrent writers, a reader following the log, no position
skipped even though commits land out of position order)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from tests.apps.es_projection_child import Tick
from tests.brokers import POSTGRES, free_port, require

from seawall import ConfigurationError, EventStoreError
from seawall.es import Batch, EventCodec, EventStore, Projection, ProjectionRunner, RecordedEvent
from seawall.es.postgres import PostgresEventStore
from seawall.testing import EventStoreConformance
from seawall.testing._event_store import new_events

pytestmark = pytest.mark.integration


async def open_store() -> PostgresEventStore:
    return await PostgresEventStore.open(
        require(POSTGRES), prefix=f"t{uuid.uuid4().hex[:10]}_", poll=0.02, max_connections=24
    )


class TestPostgresEventStore(EventStoreConformance):
    async def make_store(self) -> EventStore:
        return await open_store()

    async def dispose_store(self, store: EventStore) -> None:
        assert isinstance(store, PostgresEventStore)
        await store.drop()
        await store.close()


@pytest_asyncio.fixture
async def pg() -> AsyncIterator[PostgresEventStore]:
    store = await open_store()
    try:
        yield store
    finally:
        await store.drop()
        await store.close()


async def test_follower_skips_nothing_while_commits_land_out_of_order(
    pg: PostgresEventStore,
) -> None:
    writers, rounds = 16, 12
    total = writers * rounds * 2 + 1  # and one late committer
    seen: list[RecordedEvent] = []

    async def writer(n: int) -> None:
        for round_ in range(rounds):
            await pg.append(f"w-{n}", new_events(2), round_ * 2)

    async def follower() -> None:
        async for event in pg.subscribe(batch=7):
            seen.append(event)
            if len(seen) == total:
                return

    # a writer that takes its positions, then stalls before committing: the
    # others commit higher positions meanwhile; the follower must wait for it
    async def late_committer() -> None:
        async with pg._pool.acquire() as conn, conn.transaction():
            await conn.fetchval(
                pg._sql_append, "late", 0, ["late-1"], ["T"], ["1.0.0"], 0.0, [b"{}"]
            )
            await asyncio.sleep(0.3)

    async with asyncio.timeout(15):
        reading = asyncio.create_task(follower())
        await asyncio.gather(late_committer(), *(writer(n) for n in range(writers)))
        await reading
    positions = [e.position for e in seen]
    assert positions == sorted(positions)
    stored = await pg.query(f"SELECT position FROM {pg.prefix}events ORDER BY position")
    assert positions == [row[0] for row in stored]  # every committed event, none skipped
    assert "late-1" in {e.id for e in seen}
    late = next(e for e in seen if e.id == "late-1")
    assert late.position < positions[-1]  # it really did commit after higher positions


async def test_a_long_transaction_that_writes_no_events_holds_no_follower_back(
    pg: PostgresEventStore,
) -> None:
    seen: list[RecordedEvent] = []

    async def follow() -> None:
        async for event in pg.subscribe():
            seen.append(event)
            if len(seen) == 4:
                return

    async with pg._pool.acquire() as other, other.transaction():
        # an open transaction with an id of its own, older than every append below
        # (a report, a migration, a session idle in a transaction)
        await other.fetchval("SELECT pg_current_xact_id()")
        async with asyncio.timeout(5):
            reader = asyncio.create_task(follow())
            await pg.append("s", new_events(2), 0)
            await pg.append("s", new_events(2), 2)
            await reader
        assert await pg.head() == 4
        still_open = await other.fetchval("SELECT pg_xact_status(pg_current_xact_id())")
    assert still_open == "in progress"
    assert [e.version for e in seen] == [1, 2, 3, 4]


class PgTotals(Projection):
    name = "pg-totals"
    handles = (Tick,)

    def __init__(self, table: str) -> None:
        self.table = table

    def setup(self, batch: Batch) -> None:
        batch.execute(f"CREATE TABLE IF NOT EXISTS {self.table} (stream text PRIMARY KEY, n int)")

    def reset(self, batch: Batch, from_position: int) -> None:
        batch.execute(f"DELETE FROM {self.table}")

    async def handle(self, event: object, record: RecordedEvent, batch: Batch) -> None:
        assert isinstance(event, Tick)
        batch.execute(
            f"INSERT INTO {self.table} VALUES ($1, $2) ON CONFLICT (stream) DO UPDATE "
            f"SET n = {self.table}.n + excluded.n",
            record.stream,
            event.n,
        )


async def test_projection_on_postgres_updates_its_read_model_with_the_checkpoint(
    pg: PostgresEventStore,
) -> None:
    codec = EventCodec(Tick)
    for stream in ("a", "b", "a"):
        version = len(await pg.read_stream(stream))
        await pg.append(stream, [codec.encode(Tick(n=n)) for n in (1, 2)], version)
    table = f"{pg.prefix}totals"
    runner = ProjectionRunner(pg, codec, PgTotals(table), batch=4)
    for _ in range(1000):  # events may be held back while an older writer is still open
        await runner.catch_up()
        if await pg.checkpoint("pg-totals") == 6:
            break
        await asyncio.sleep(0.01)
    assert await pg.query(f"SELECT stream, n FROM {table} ORDER BY stream") == [("a", 6), ("b", 3)]
    assert await runner.rebuild() == 6
    assert await pg.query(f"SELECT sum(n) FROM {table}") == [(9,)]
    await pg.query(f"DROP TABLE {table}")


async def test_unreachable_server_and_bad_prefix_are_clear_errors() -> None:
    with pytest.raises(EventStoreError, match="cannot open the event store") as info:
        await PostgresEventStore.open(f"postgresql://postgres:s3cret@127.0.0.1:{free_port()}/test")
    assert "s3cret" not in str(info.value)  # a DSN's password stays out of errors
    with pytest.raises(ConfigurationError, match="prefix"):
        await PostgresEventStore.open(require(POSTGRES), prefix="Bad-Prefix")


async def test_a_subscriber_sees_appends_made_through_another_connection_pool(
    pg: PostgresEventStore,
) -> None:
    other = await PostgresEventStore.open(require(POSTGRES), prefix=pg.prefix, poll=0.02)
    seen: list[RecordedEvent] = []

    async def follow() -> None:
        async for event in pg.subscribe():
            seen.append(event)
            if len(seen) == 6:
                return

    try:
        async with asyncio.timeout(15):
            reader = asyncio.create_task(follow())
            for version in range(0, 6, 2):
                await other.append("elsewhere", new_events(2), version)
            await reader
    finally:
        await other.close()
    assert [e.version for e in seen] == [1, 2, 3, 4, 5, 6]


async def test_a_closed_store_says_so(pg: PostgresEventStore) -> None:
    other = await PostgresEventStore.open(require(POSTGRES), prefix=pg.prefix)
    await other.close()
    with pytest.raises(EventStoreError, match="closed"):
        await other.append("s", new_events(1), 0)
    with pytest.raises(EventStoreError, match="closed"):
        await other.read_all()
    with pytest.raises(EventStoreError, match="closed"):
        await other.commit_projection("p", 0, 0, [])
