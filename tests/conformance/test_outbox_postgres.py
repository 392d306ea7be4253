"""The PostgreSQL outbox against the real server: the shared conformance suite, plus what
only it promises (commit order per aggregate under interleaved transactions, several
relays sharing the work without breaking an aggregate's order)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import msgspec
import pytest
import pytest_asyncio
from tests.brokers import POSTGRES, require

from seawall import (
    ConfigurationError,
    Context,
    Event,
    MemoryTransport,
    Message,
    OutboxError,
    System,
)
from seawall.outbox import Outbox, PollingRelay, PostgresOutbox
from seawall.testing import OutboxConformance, RecordingTransport

pytestmark = pytest.mark.integration


class Moved(Event, frozen=True):
    key: str
    n: int


async def open_outbox(**options: Any) -> PostgresOutbox:
    return await PostgresOutbox.open(
        require(POSTGRES), prefix=f"t{uuid.uuid4().hex[:10]}_", max_connections=20, **options
    )


async def dispose(outbox: PostgresOutbox) -> None:
    await outbox.drop()
    await outbox.close()


class TestPostgresOutbox(OutboxConformance):
    async def make_outbox(self, *, retention: float | None = None) -> Outbox[Any]:
        return await open_outbox(retention=retention)

    async def dispose_outbox(self, outbox: Outbox[Any]) -> None:
        assert isinstance(outbox, PostgresOutbox)
        await dispose(outbox)


@pytest_asyncio.fixture
async def outbox() -> AsyncIterator[PostgresOutbox]:
    made = await open_outbox()
    try:
        yield made
    finally:
        await dispose(made)


@pytest_asyncio.fixture
async def ctx() -> AsyncIterator[Context]:
    async with System(transport=MemoryTransport()) as system:
        yield system.context("mover")


async def test_an_aggregates_rows_follow_commit_order_not_begin_order(
    outbox: PostgresOutbox, ctx: Context
) -> None:
    # The first transaction to publish for "k" commits last; the second waits for it at
    # its insert, so the table's order per aggregate is the order of commits.
    first_published = asyncio.Event()
    release_first = asyncio.Event()

    async def first() -> None:
        async with outbox.transaction(ctx) as tx:
            await tx.publish(Moved(key="k", n=1), key="k")
            first_published.set()
            await release_first.wait()

    async def second() -> None:
        await first_published.wait()
        async with outbox.transaction(ctx) as tx:
            await tx.publish(Moved(key="k", n=2), key="k")

    async with asyncio.TaskGroup() as tasks:
        tasks.create_task(first())
        later = tasks.create_task(second())
        # buffered until commit: nothing holds the second one back while the first is open
        # (were it held, this would time out, the first waiting for release_first)
        await asyncio.wait_for(asyncio.shield(later), timeout=10)
        release_first.set()
    async with outbox.claim(10) as rows:
        assert [msgspec.json.decode(r.payload, type=Moved).n for r in rows] == [2, 1]


async def test_a_writer_of_an_aggregate_waits_for_the_one_committing_it(
    outbox: PostgresOutbox, ctx: Context
) -> None:
    async with outbox._pool.acquire() as holder, holder.transaction():
        await holder.execute(
            f"SELECT pg_advisory_xact_lock(hashtext('{outbox.prefix}outbox'), hashtext('k'))"
        )
        blocked = asyncio.create_task(
            asyncio.wait_for(
                _publish(outbox, ctx, Moved(key="k", n=1)),
                timeout=10,
            )
        )
        await asyncio.sleep(0.2)
        assert not blocked.done()
    await blocked
    assert await outbox.pending() == 1


async def _publish(outbox: PostgresOutbox, ctx: Context, event: Moved) -> None:
    async with outbox.transaction(ctx) as tx:
        await tx.publish(event, key=event.key)


class SlowTransport(RecordingTransport):
    """Takes a moment per publish, so relays overlap in time."""

    async def publish(self, channel: str, message: Message, **options: Any) -> None:
        await asyncio.sleep(0.002)
        await super().publish(channel, message, **options)


async def test_several_relays_share_the_work_and_keep_each_aggregates_order(
    outbox: PostgresOutbox, ctx: Context
) -> None:
    keys = [f"k{i}" for i in range(40)]
    for n in range(10):
        async with outbox.transaction(ctx) as tx:
            for key in keys:
                await tx.publish(Moved(key=key, n=n), key=key)
    memory = MemoryTransport()
    shared = SlowTransport(memory)  # records every publish in the order it happened
    relays = [PollingRelay(outbox, shared, batch=40, window=4, buckets=4) for _ in range(3)]

    async def drain(relay: PollingRelay) -> None:
        while await outbox.pending():
            if await relay.step() == 0:
                await asyncio.sleep(0.005)  # every bucket with rows is someone else's

    await asyncio.gather(*(drain(relay) for relay in relays))
    assert all(relay.statistics().published for relay in relays)
    assert sum(relay.statistics().published for relay in relays) == 400
    assert len({m.id for _, m in shared.records}) == 400
    for key in keys:
        ns = [
            msgspec.json.decode(m.data, type=Moved).n
            for _, m in shared.records
            if m.partitionkey == key
        ]
        assert ns == list(range(10))
    await memory.close()


async def test_partitions_are_fixed_when_the_tables_are_made(outbox: PostgresOutbox) -> None:
    url = require(POSTGRES)
    again = await PostgresOutbox.open(url, prefix=outbox.prefix)
    assert again.partitions == 16
    await again.close()
    with pytest.raises(ConfigurationError, match="created with 16 partitions"):
        await PostgresOutbox.open(url, prefix=outbox.prefix, partitions=8)


async def test_errors_name_the_outbox_and_keep_the_cause(
    outbox: PostgresOutbox, ctx: Context
) -> None:
    async def bad_statement() -> None:
        async with outbox.transaction(ctx) as tx:
            await tx.publish(Moved(key="k", n=1), key="k")
            await tx.connection.execute("SELECT 1/0")

    with pytest.raises(Exception, match="division by zero"):
        await bad_statement()
    assert await outbox.pending() == 0
    with pytest.raises(ConfigurationError, match="dsn or a pool"):
        await PostgresOutbox.open()
    with pytest.raises(OutboxError, match="cannot open the outbox database at postgresql://127"):
        await PostgresOutbox.open("postgresql://someone:secret@127.0.0.1:1/none")
