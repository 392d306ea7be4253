"""The PostgreSQL event store against the real server: the conformance suite and
the gap test (many concurrent writers, a reader following the log, no position
skipped even though commits land out of position order)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from tests.brokers import POSTGRES, require

from seawall.es import EventStore, RecordedEvent
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
