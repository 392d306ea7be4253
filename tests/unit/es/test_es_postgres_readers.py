"""The PostgreSQL event store's reads on connections of their own (outside asyncpg's
pool): reused from one read to the next, never reused after a cancelled statement,
closed with the store, and the pool still answering when every reader is busy."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import asyncpg
import pytest
import pytest_asyncio
from tests.brokers import POSTGRES, require, unique

from seawall import ConfigurationError, EventStoreError
from seawall.es.postgres import PostgresEventStore
from seawall.testing._event_store import new_events

pytestmark = pytest.mark.integration


async def open_store(max_connections: int) -> PostgresEventStore:
    prefix = unique("esr").replace("-", "_").lower() + "_"
    return await PostgresEventStore.open(
        require(POSTGRES), prefix=prefix, max_connections=max_connections
    )


@pytest_asyncio.fixture
async def pg() -> AsyncIterator[PostgresEventStore]:
    store = await open_store(8)  # two readers, six pooled connections
    try:
        yield store
    finally:
        await store.drop()
        await store.close()


async def backend(store: PostgresEventStore) -> int:
    rows = await store.query("SELECT pg_backend_pid()")
    pid = rows[0][0]
    assert isinstance(pid, int)
    return pid


async def alive(pid: int) -> bool:
    conn = await asyncpg.connect(require(POSTGRES))
    try:
        return bool(
            await conn.fetchval("SELECT count(*) FROM pg_stat_activity WHERE pid = $1", pid)
        )
    finally:
        await conn.close()


async def gone(pid: int) -> bool:
    for _ in range(200):  # the server notices a dropped socket once its statement ends
        if not await alive(pid):
            return True
        await asyncio.sleep(0.05)
    return False


async def test_sequential_reads_reuse_one_connection(pg: PostgresEventStore) -> None:
    await pg.append("s", new_events(3), 0)
    pids = {await backend(pg) for _ in range(10)}
    assert len(pids) == 1
    for _ in range(10):
        assert [e.version for e in await pg.read_stream("s")] == [1, 2, 3]
    assert await backend(pg) in pids


async def test_reads_beyond_the_readers_go_through_the_pool(pg: PostgresEventStore) -> None:
    await pg.append("s", new_events(4), 0)
    reads = await asyncio.gather(*(pg.read_stream("s") for _ in range(40)))
    assert all([e.version for e in read] == [1, 2, 3, 4] for read in reads)
    slow = await asyncio.gather(
        *(pg.query("SELECT pg_backend_pid(), pg_sleep(0.2)") for _ in range(4))
    )
    assert len({row[0][0] for row in slow}) == 4  # two readers and two pooled connections


async def test_a_failed_statement_keeps_the_reader(pg: PostgresEventStore) -> None:
    before = await backend(pg)
    with pytest.raises(EventStoreError, match="nope"):
        await pg.query("SELECT nope")
    assert await backend(pg) == before


async def test_a_cancelled_read_drops_its_connection(pg: PostgresEventStore) -> None:
    await pg.append("s", new_events(2), 0)
    first = await backend(pg)
    sleeper = asyncio.create_task(pg.query("SELECT pg_sleep(2)"))
    await asyncio.sleep(0.3)
    sleeper.cancel()
    with pytest.raises(asyncio.CancelledError):
        await sleeper
    # not handed to the next read mid-statement: that one runs elsewhere, and the
    # cancelled session ends (once the server is done with its statement)
    assert [e.version for e in await pg.read_stream("s")] == [1, 2]
    assert await backend(pg) != first
    assert await gone(first)


async def test_close_closes_the_readers() -> None:
    store = await open_store(8)
    try:
        pid = await backend(store)
    finally:
        await store.drop()
        await store.close()
    assert await gone(pid)
    with pytest.raises(EventStoreError, match="closed"):
        await store.read_stream("s")


async def test_one_connection_reads_and_writes_through_the_pool() -> None:
    store = await open_store(1)
    try:
        await store.append("s", new_events(2), 0)
        reads = await asyncio.gather(*(store.read_stream("s") for _ in range(5)))
        assert all(len(read) == 2 for read in reads)
        assert len({await backend(store) for _ in range(3)}) == 1
    finally:
        await store.drop()
        await store.close()


async def test_no_connection_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="max_connections"):
        await PostgresEventStore.open(require(POSTGRES), max_connections=0)
