"""Log tailing against a real PostgreSQL with logical decoding (a private cluster).

The shared server runs ``wal_level = replica``; these tests start a cluster of
their own (``tests/pg_cluster.py``) with ``wal_level = logical`` on a free port,
once for the module, and stop and remove it at the end. Every test drops the
replication slots and tables it made (a forgotten slot keeps WAL for ever).

* publishes in commit order, not insert order;
* never publishes a rolled-back transaction (nor a rolled-back savepoint);
* resumes after SIGKILL without loss: a relay in a forked child, killed 20 times
  (``SEAWALL_OUTBOX_TAILING_KILLS``) while transactions commit and roll back,
  publishes every committed row to a ``seawall broker`` by the end, per
  aggregate in commit order, and nothing rolled back;
* rows committed before the slot existed are published once, when it is made;
* one relay per slot publishes, a second one waits; a quiet outbox does not hold
  WAL back; the slot and publication go with :meth:`LogTailingRelay.drop`.
"""

from __future__ import annotations

import asyncio
import os
import random
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import msgspec
import pytest
import pytest_asyncio
from tests.apps.outbox_bank import serve_tailing
from tests.broker_process import start_broker
from tests.brokers import POSTGRES, _missing, free_port, require
from tests.forked import Child, preload
from tests.pg_cluster import ClusterUnavailable, LogicalCluster, logical_cluster

from seawall import (
    ChannelSpec,
    ConfigurationError,
    Context,
    Event,
    MemoryTransport,
    Message,
    System,
    Transport,
)
from seawall.outbox import LogTailingRelay, PostgresOutbox
from seawall.outbox._rows import OutboxRow, row_for
from seawall.testing import RecordingTransport

pytestmark = pytest.mark.integration

KILLS = int(os.environ.get("SEAWALL_OUTBOX_TAILING_KILLS", "20"))
preload("tests.apps.outbox_bank", "seawall.transports.seawall", "asyncpg")


class Moved(Event, frozen=True):
    key: str
    n: int


@pytest.fixture(scope="module")
def cluster() -> Iterator[LogicalCluster]:
    try:
        with logical_cluster(free_port()) as started:
            yield started
    except ClusterUnavailable as exc:
        _missing(f"a private PostgreSQL cluster with wal_level=logical: {exc}")


@pytest_asyncio.fixture
async def outbox(cluster: LogicalCluster) -> AsyncIterator[PostgresOutbox]:
    made = await PostgresOutbox.open(cluster.url, prefix=f"t{uuid.uuid4().hex[:10]}_")
    try:
        yield made
    finally:
        await made.drop()
        await made.close()


@pytest_asyncio.fixture
async def ctx() -> AsyncIterator[Context]:
    async with System(transport=MemoryTransport()) as system:
        yield system.context("mover")


@pytest_asyncio.fixture
async def recording() -> AsyncIterator[RecordingTransport]:
    memory = MemoryTransport()
    try:
        yield RecordingTransport(memory)
    finally:
        await memory.close()


@pytest_asyncio.fixture
async def relay(
    cluster: LogicalCluster, outbox: PostgresOutbox, recording: RecordingTransport
) -> AsyncIterator[LogTailingRelay]:
    opened = await LogTailingRelay.open(cluster.url, recording, prefix=outbox.prefix, poll=0.05)
    try:
        yield opened
    finally:
        await opened.drop()
        await opened.close()


def moved(ctx: Context, key: str, n: int) -> OutboxRow:
    message = ctx.envelope(Moved(key=key, n=n), key=key)
    return row_for(message, channel="mover.events", aggregate_type="Move", partitions=16)


async def insert(conn: Any, prefix: str, row: OutboxRow) -> None:
    """An outbox row written by hand, so a test decides when it commits."""
    await conn.execute(
        f"INSERT INTO {prefix}outbox (id, aggregatetype, aggregateid, type, payload, headers, "
        "channel, partition) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        row.id,
        row.aggregatetype,
        row.aggregateid,
        row.type,
        row.payload,
        row.headers,
        row.channel,
        row.partition,
    )


def published(recording: RecordingTransport) -> list[tuple[str, int]]:
    return [
        (m.partitionkey or "", msgspec.json.decode(m.data, type=Moved).n)
        for _, m in recording.records
    ]


async def test_publishes_in_commit_order_not_insert_order(
    cluster: LogicalCluster,
    outbox: PostgresOutbox,
    ctx: Context,
    relay: LogTailingRelay,
    recording: RecordingTransport,
) -> None:
    first, second = [await asyncpg.connect(cluster.url) for _ in range(2)]
    try:
        async with first.transaction():
            await insert(first, outbox.prefix, moved(ctx, "a", 1))  # inserted first...
            async with second.transaction():
                await insert(second, outbox.prefix, moved(ctx, "b", 2))
            # ... committed second
        async with outbox.transaction(ctx) as tx:
            await tx.publish(Moved(key="a", n=3), key="a")
    finally:
        await first.close()
        await second.close()
    assert await relay.drain() == 3
    assert published(recording) == [("b", 2), ("a", 1), ("a", 3)]
    assert await outbox.pending() == 0  # published rows are deleted


async def test_never_publishes_a_rolled_back_transaction_or_savepoint(
    cluster: LogicalCluster,
    outbox: PostgresOutbox,
    ctx: Context,
    relay: LogTailingRelay,
    recording: RecordingTransport,
) -> None:
    async def rolled_back() -> None:
        async with outbox.transaction(ctx) as tx:
            await tx.publish(Moved(key="a", n=1), key="a")
            raise RuntimeError("rolled back")

    with pytest.raises(RuntimeError):
        await rolled_back()
    conn = await asyncpg.connect(cluster.url)
    try:
        async with conn.transaction():
            await insert(conn, outbox.prefix, moved(ctx, "a", 2))
            savepoint = conn.transaction()
            await savepoint.start()
            await insert(conn, outbox.prefix, moved(ctx, "a", 3))
            await savepoint.rollback()
        async with conn.transaction():
            await insert(conn, outbox.prefix, moved(ctx, "b", 4))
        transaction = conn.transaction()
        await transaction.start()
        await insert(conn, outbox.prefix, moved(ctx, "c", 5))
        await transaction.rollback()
    finally:
        await conn.close()
    assert await relay.drain() == 2
    assert published(recording) == [("a", 2), ("b", 4)]


async def test_rows_older_than_the_slot_are_published_once_before_it(
    cluster: LogicalCluster,
    outbox: PostgresOutbox,
    ctx: Context,
    recording: RecordingTransport,
) -> None:
    for n in range(3):  # before any relay: the slot, made later, never sees these
        async with outbox.transaction(ctx) as tx:
            await tx.publish(Moved(key="a", n=n), key="a")
    relay = await LogTailingRelay.open(cluster.url, recording, prefix=outbox.prefix, delete=False)
    try:
        assert relay.statistics().published == 3  # opening the relay published them
        assert await relay.drain() == 0
        async with outbox.transaction(ctx) as tx:
            await tx.publish(Moved(key="a", n=3), key="a")
        assert await relay.drain() == 1
        await relay.close()
        again = await LogTailingRelay.open(cluster.url, recording, prefix=outbox.prefix)
        assert await again.drain() == 0  # the table still has 4 rows: caught up once only
        await again.close()
    finally:
        await relay.drop()
        await relay.close()
    assert published(recording) == [("a", 0), ("a", 1), ("a", 2), ("a", 3)]


async def test_a_second_relay_waits_while_the_first_publishes(
    cluster: LogicalCluster,
    outbox: PostgresOutbox,
    ctx: Context,
    relay: LogTailingRelay,
    recording: RecordingTransport,
) -> None:
    async with outbox.transaction(ctx) as tx:
        await tx.publish(Moved(key="a", n=1), key="a")
    assert await relay.step() == 1
    standby = await LogTailingRelay.open(cluster.url, recording, prefix=outbox.prefix)
    try:
        async with outbox.transaction(ctx) as tx:
            await tx.publish(Moved(key="a", n=2), key="a")
        assert await standby.step() == 0  # the first one holds the slot
        await relay.close()
        assert await standby.step() == 1
    finally:
        await standby.close()
    assert published(recording) == [("a", 1), ("a", 2)]


async def test_a_quiet_outbox_does_not_hold_wal_back(
    cluster: LogicalCluster, outbox: PostgresOutbox, recording: RecordingTransport
) -> None:
    relay = await LogTailingRelay.open(cluster.url, recording, prefix=outbox.prefix, heartbeat=4096)
    try:
        assert await relay.step() == 0
        conn = await asyncpg.connect(cluster.url)
        try:
            await conn.execute("CREATE TABLE busy_elsewhere (n int)")
            await conn.execute("INSERT INTO busy_elsewhere SELECT generate_series(1, 1000)")
            await conn.execute("DROP TABLE busy_elsewhere")
        finally:
            await conn.close()
        assert await relay.lag() > 4096
        assert await relay.step() == 0  # nothing to publish: a heartbeat is written
        assert await relay.step() == 0  # which is read, and the slot moves past it
        assert await relay.lag() < 4096
    finally:
        await relay.drop()
        await relay.close()


async def test_drop_removes_the_slot_and_the_publication(
    cluster: LogicalCluster, outbox: PostgresOutbox, recording: RecordingTransport
) -> None:
    relay = await LogTailingRelay.open(cluster.url, recording, prefix=outbox.prefix)
    conn = await asyncpg.connect(cluster.url)
    try:
        slots = "SELECT count(*) FROM pg_replication_slots WHERE slot_name = $1"
        assert await conn.fetchval(slots, relay.slot) == 1
        await relay.drop()
        await relay.close()
        assert await conn.fetchval(slots, relay.slot) == 0
        publications = "SELECT count(*) FROM pg_publication WHERE pubname = $1"
        assert await conn.fetchval(publications, relay.publication) == 0
    finally:
        await conn.close()


async def test_a_server_without_logical_decoding_or_outbox_is_refused(
    cluster: LogicalCluster,
) -> None:
    transport = MemoryTransport()
    with pytest.raises(ConfigurationError, match="wal_level = logical"):
        await LogTailingRelay.open(require(POSTGRES), transport)
    with pytest.raises(ConfigurationError, match=r"no outbox table public\.nothere_outbox"):
        await LogTailingRelay.open(cluster.url, transport, prefix="nothere_")
    await transport.close()


# -- resuming after SIGKILL -------------------------------------------------------------


@pytest_asyncio.fixture
async def broker(tmp_path: Path) -> AsyncIterator[str]:
    port = free_port()
    proc = start_broker(tmp_path / "broker", port)
    try:
        yield f"seawall://127.0.0.1:{port}"
    finally:
        proc.kill()
        proc.wait()
        if proc.stderr is not None:
            proc.stderr.close()


class Writer:
    """Commits and rolls back outbox transactions, keys k0..k4 in turn; knows which."""

    def __init__(self, outbox: PostgresOutbox, ctx: Context) -> None:
        self.outbox = outbox
        self.ctx = ctx
        self.committed: dict[str, tuple[str, int]] = {}
        self.rolled_back: set[str] = set()
        self.n = 0

    async def transaction(self, rng: random.Random) -> None:
        ids: dict[str, tuple[str, int]] = {}
        try:
            async with self.outbox.transaction(self.ctx) as tx:
                for _ in range(rng.randint(1, 4)):
                    self.n += 1
                    key = f"k{self.n % 5}"
                    ids[await tx.publish(Moved(key=key, n=self.n), key=key)] = (key, self.n)
                if rng.random() < 0.2:
                    raise LookupError("roll back")
        except LookupError:
            self.rolled_back.update(ids)
        else:
            self.committed.update(ids)

    async def run(self, rng: random.Random, stop: asyncio.Event) -> None:
        while not stop.is_set():
            await self.transaction(rng)
            await asyncio.sleep(0.002)


async def read_channel(transport: Transport, channel: str, count: int) -> list[Message]:
    """Every message the group ``checker`` gets, until ``count`` distinct ids came."""
    sub = await transport.subscribe(channel, group="checker", prefetch=512)
    got: list[Message] = []
    try:
        async with asyncio.timeout(60):
            async for delivery in sub:
                got.append(delivery.message)
                await sub.ack(delivery)
                if len({m.id for m in got}) >= count:
                    break
    finally:
        await sub.close()
    return got


@pytest.mark.slow
async def test_resumes_after_kill_9_without_loss(
    cluster: LogicalCluster, outbox: PostgresOutbox, ctx: Context, broker: str
) -> None:
    rng = random.Random(19)
    writer = Writer(outbox, ctx)
    async with System(transport=broker) as system:
        transport = system.transport
        await transport.declare(ChannelSpec(name="mover.events"))
        await (await transport.subscribe("mover.events", group="checker")).close()
        stop = asyncio.Event()
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(writer.run(rng, stop))
            for _ in range(KILLS):
                child = Child(serve_tailing, cluster.url, broker, outbox.prefix)
                await asyncio.to_thread(child.start)
                await asyncio.sleep(rng.uniform(0.05, 0.4))
                child.kill()
            stop.set()
        last = Child(serve_tailing, cluster.url, broker, outbox.prefix)
        await asyncio.to_thread(last.start)
        try:
            got = await read_channel(transport, "mover.events", len(writer.committed))
        finally:
            last.kill()
    relay = await LogTailingRelay.open(cluster.url, MemoryTransport(), prefix=outbox.prefix)
    await relay.drop()
    await relay.close()
    ids = {m.id for m in got}
    assert set(writer.committed) - ids == set()  # lost: none
    assert ids & writer.rolled_back == set()
    assert ids <= set(writer.committed)
    first: dict[str, list[int]] = {}
    seen: set[str] = set()
    for message in got:
        if message.id not in seen:
            seen.add(message.id)
            key, n = writer.committed[message.id]
            first.setdefault(key, []).append(n)
    assert all(ns == sorted(ns) for ns in first.values())
    print(
        f"{KILLS} kills: {len(writer.committed)} rows committed, {len(writer.rolled_back)} "
        f"rolled back, {len(got)} published ({len(got) - len(ids)} repeats), lost 0"
    )
