"""The PostgreSQL event store, on asyncpg.

**Gap-free reading.** Global positions come from an identity column, so they
are handed out when a row is inserted, not when its transaction commits. Two
appends can commit in the opposite order of their positions; a reader that
saw position 8 (committed) and then moved its checkpoint past 7 (not yet
committed) would skip 7 for ever. The classic answer, a table lock held until
commit, makes every append wait for the previous one's commit (its fsync).

We keep writers apart only for the moment they take their transaction id and
their positions, and let readers hold back what might still be overtaken:

* each row stores its writing transaction's id (``xid``, ``pg_current_xact_id()``);
* an append first takes a transaction-level *shared* advisory lock (the
  writers' mark, held until it commits or aborts; writers never wait on each
  other for it), then a session advisory lock under which it inserts (which
  assigns the xid and the positions), and releases that one *before*
  committing. So among event writers a lower transaction id always means lower
  positions, and every writer with uncommitted rows carries the mark;
* a reader returns only rows whose ``xid`` is below a *horizon*: the lowest
  transaction id, among those its snapshot sees as running, that is either an
  event writer (it carries the mark) or has ended since the snapshot was taken
  (it may have been one), or the snapshot's ``xmax`` if there is none.

Suppose a reader returned row *q* while a lower position *p* was uncommitted
at its snapshot: *p*'s writer took its xid and positions before *q*'s writer,
so its xid is the smaller one, and it is among the running ones the snapshot
lists. The horizon is computed after the snapshot: the lock table is read
first (one consistent read), the transactions' states after it. If *p*'s
writer was still running when the locks were read, it carried the mark; if not,
it had ended before its state was read. Either way the horizon is at or below
*p*'s xid, so below *q*'s, and *q* was held back. Commits (the slow part)
still run side by side. A long transaction that writes no events (a report, a
migration, an idle session in a transaction) holds nobody back; a row becomes
readable once every event writer that took its positions before it has ended.

Followers in this process wake as soon as an append here commits; appends by
other processes are seen by polling (``poll`` seconds, 0.1 by default). We do
not use LISTEN/NOTIFY for that: a transaction that notifies takes a
database-wide lock at commit, which would line the commits up again.

**Reads skip the pool.** Loading an aggregate is one short query; asyncpg's pool
costs more per call than the query's own client work (its release runs in a new
task, under ``asyncio.shield``). Reads therefore take a connection from a small
free list of their own (a quarter of ``max_connections``, out of that total),
opened on first use and kept, each with asyncpg's per-connection cache of
prepared statements. When every reader is busy, a read goes through the pool.

Every table name takes an optional prefix, so several stores (or tests) can
share one database.

``sync`` is the fsync policy of :mod:`seawall._fsync`, set on the store's
connections as PostgreSQL's ``synchronous_commit``: ``"always"`` (the default)
and ``"batch"`` are ``on`` (a commit returns once its WAL is flushed, which
PostgreSQL shares among concurrent commits); ``"none"`` is ``off`` (a server
crash may lose the last commits, never damage the database).
"""

from __future__ import annotations

import re
from collections.abc import AsyncGenerator, Awaitable, Callable, Sequence
from itertools import groupby
from typing import Any

from .._clock import Clock, SystemClock, outside_the_loop
from .._exceptions import ConcurrencyError, ConfigurationError, EventStoreError, StaleEpoch
from .._fsync import SyncPolicy, parse_sync
from .._transport.options import redact
from .._transport.ownership import Fence
from ._follow import AppendSignal, follow
from ._readers import Readers
from ._records import NewEvent, ProjectionWrite, RecordedEvent, SnapshotRecord

__all__ = ["PostgresEventStore"]

_PREFIX = re.compile(r"^[a-z_][a-z0-9_]*$|^$")
_COLUMNS = "position, stream, version, id, type, type_version, time, data"


def _visible(p: str) -> str:
    """The reader's guard (an init plan: the horizon is computed once per query)."""
    return f"xid < (SELECT {p}horizon(pg_current_snapshot()))"


def _schema(p: str) -> str:
    return f"""
    CREATE TABLE IF NOT EXISTS {p}events (
        position bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        stream text NOT NULL,
        version integer NOT NULL,
        id text NOT NULL,
        type text NOT NULL,
        type_version text NOT NULL,
        time double precision NOT NULL,
        data bytea NOT NULL,
        xid xid8 NOT NULL DEFAULT pg_current_xact_id(),
        UNIQUE (stream, version)
    );
    CREATE TABLE IF NOT EXISTS {p}snapshots (
        stream text PRIMARY KEY,
        version integer NOT NULL,
        type text NOT NULL,
        type_version text NOT NULL,
        data bytea NOT NULL
    );
    CREATE TABLE IF NOT EXISTS {p}checkpoints (
        name text PRIMARY KEY,
        position bigint NOT NULL
    );
    CREATE TABLE IF NOT EXISTS {p}fences (
        scope text PRIMARY KEY,
        epoch bigint NOT NULL
    );
    -- keep the highest epoch seen for a scope (the row stays locked until the caller's
    -- transaction ends) and return it: higher than e means e is stale
    CREATE OR REPLACE FUNCTION {p}fence(s text, e bigint) RETURNS bigint
    LANGUAGE sql AS $$
        INSERT INTO {p}fences AS f (scope, epoch) VALUES (s, e)
        ON CONFLICT (scope) DO UPDATE SET epoch = greatest(f.epoch, excluded.epoch)
        RETURNING epoch
    $$;
    CREATE OR REPLACE FUNCTION {p}horizon(snap pg_snapshot) RETURNS xid8
    LANGUAGE plpgsql AS $$
    DECLARE
        writers xid[];
        lowest xid8;
    BEGIN
        -- one read of the lock table: the transaction ids of those carrying the mark
        WITH l AS MATERIALIZED (SELECT * FROM pg_locks)
        SELECT array_agg(t.transactionid) INTO writers
        FROM l AS mark JOIN l AS t ON t.virtualtransaction = mark.virtualtransaction
        WHERE mark.locktype = 'advisory' AND mark.granted AND mark.objsubid = 2
          AND mark.classid = hashtext('seawall-es')::oid
          AND mark.objid = hashtext('{p}events')::oid
          AND mark.database = (SELECT oid FROM pg_database WHERE datname = current_database())
          AND t.locktype = 'transactionid' AND t.granted AND t.mode = 'ExclusiveLock';
        -- then the states, read after the locks: a writer missing there has ended by now
        SELECT min(x) INTO lowest FROM pg_snapshot_xip(snap) AS x
        WHERE xid(x) = ANY(coalesce(writers, '{{}}'))
           OR pg_xact_status(x) IS DISTINCT FROM 'in progress';
        RETURN least(lowest, pg_snapshot_xmax(snap));
    END $$;
    CREATE OR REPLACE FUNCTION {p}append(
        s text, expected integer, ids text[], types text[], versions text[],
        t double precision, payloads bytea[]
    ) RETURNS integer LANGUAGE plpgsql AS $$
    DECLARE
        actual integer;
    BEGIN
        PERFORM pg_advisory_xact_lock_shared(hashtext('seawall-es'), hashtext('{p}events'));
        PERFORM pg_advisory_lock(hashtext('{p}events'));
        SELECT coalesce(max(version), 0) INTO actual FROM {p}events WHERE stream = s;
        IF actual <> expected THEN
            PERFORM pg_advisory_unlock(hashtext('{p}events'));
            RETURN -1 - actual;
        END IF;
        INSERT INTO {p}events (stream, version, id, type, type_version, time, data)
        SELECT s, expected + u.n, u.id, u.type, u.type_version, t, u.data
        FROM unnest(ids, types, versions, payloads) WITH ORDINALITY
            AS u(id, type, type_version, data, n);
        PERFORM pg_advisory_unlock(hashtext('{p}events'));
        RETURN expected + cardinality(ids);
    END $$;
    """


async def _keep_session(conn: Any) -> None:
    """Skip asyncpg's reset query on release: a round trip per call, and our calls leave
    no session state (the append's advisory lock is released, or the connection dropped)."""


class PostgresEventStore:
    """An event store in a PostgreSQL database; open it with :meth:`open`."""

    def __init__(
        self,
        pool: Any,
        *,
        prefix: str,
        clock: Clock,
        poll: float,
        connect: Callable[[], Awaitable[Any]] | None = None,
        readers: int = 0,
    ) -> None:
        self._pool = pool
        self._readers = Readers(pool, connect, readers)  # out of max_connections
        self._closed = False
        self.prefix = prefix
        self._clock = clock
        self._poll = poll
        self._signal = AppendSignal()
        p = prefix
        self._sql_append = f"SELECT {p}append($1, $2, $3, $4, $5, $6, $7)"
        self._sql_fence = f"SELECT {p}fence($1, $2)"
        self._sql_stream = (
            f"SELECT {_COLUMNS} FROM {p}events WHERE stream = $1 AND version >= $2 ORDER BY version"
        )
        self._sql_all = (
            f"SELECT {_COLUMNS} FROM {p}events WHERE position > $1 AND {_visible(p)} "
            "ORDER BY position LIMIT $2"
        )

        # the snapshot (position -1) and the events after it, in one round trip
        self._sql_from_snapshot = f"""
            WITH s AS (SELECT version, type, type_version, data FROM {p}snapshots
                       WHERE stream = $1)
            SELECT -1::bigint, '', version, '', type, type_version, 0::float8, data FROM s
            UNION ALL
            (SELECT {_COLUMNS} FROM {p}events WHERE stream = $1
             AND version > coalesce((SELECT version FROM s), 0) ORDER BY version)
            ORDER BY 3"""

    @classmethod
    async def open(
        cls,
        dsn: str,
        *,
        prefix: str = "",
        clock: Clock | None = None,
        poll: float = 0.1,
        max_connections: int = 10,
        sync: SyncPolicy = "always",
    ) -> PostgresEventStore:
        """Connect to ``dsn`` and create the tables (named ``{prefix}events`` ...) if missing."""
        policy = parse_sync(sync, where="PostgresEventStore.open")
        commit = "off" if policy == "none" else "on"
        if not _PREFIX.match(prefix):
            raise ConfigurationError(
                f"table prefix {prefix!r} must be lower-case letters, digits and '_'"
            )
        try:
            import asyncpg
        except ImportError:  # pragma: no cover - depends on the install
            raise ConfigurationError(
                "PostgresEventStore needs asyncpg: pip install 'seawall[postgres]'"
            ) from None
        if max_connections < 1:
            raise ConfigurationError(f"max_connections must be at least 1, not {max_connections}")
        settings = {"synchronous_commit": commit}
        readers = max_connections // 4
        try:
            pool = await asyncpg.create_pool(
                dsn,
                min_size=1,
                max_size=max_connections - readers,
                reset=_keep_session,
                server_settings=settings,
            )
        except (OSError, asyncpg.PostgresError) as exc:
            raise EventStoreError(f"cannot open the event store at {redact(dsn)!r}: {exc}") from exc
        try:
            # one creator at a time: CREATE ... IF NOT EXISTS races with itself
            async with pool.acquire() as conn, conn.transaction():
                await conn.execute("SELECT pg_advisory_xact_lock(hashtext('seawall-es-ddl'))")
                await conn.execute(_schema(prefix))
        except BaseException as exc:
            await pool.close()
            if isinstance(exc, asyncpg.PostgresError):
                raise EventStoreError(f"cannot create the event store tables: {exc}") from exc
            raise
        return cls(
            pool,
            prefix=prefix,
            clock=clock or SystemClock(),
            poll=poll,
            connect=lambda: asyncpg.connect(dsn, server_settings=settings),
            readers=readers,
        )

    async def _fetch(self, sql: str, *args: Any) -> list[Any]:
        """Rows of one statement (see :mod:`._readers`)."""
        import asyncpg

        if self._closed or self._pool.is_closing():
            raise EventStoreError(f"event store {self.prefix}events is closed")
        try:
            with outside_the_loop():  # a virtual clock waits for the server
                return await self._readers.fetch(sql, *args)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            raise EventStoreError(f"event store {self.prefix}events: {exc}") from exc

    async def append(
        self,
        stream: str,
        events: Sequence[NewEvent],
        expected_version: int,
        *,
        fence: Fence | None = None,
    ) -> int:
        if not events:
            raise ConfigurationError(f"append to {stream!r} with no events")
        args = (
            stream,
            expected_version,
            [e.id for e in events],
            [e.type for e in events],
            [e.type_version for e in events],
            self._clock.time(),
            [e.data for e in events],
        )
        if self._pool.is_closing():
            raise EventStoreError(f"event store {self.prefix}events is closed")
        with outside_the_loop():  # a virtual clock waits for the server
            result = await self._append(stream, expected_version, args, fence)
        if result < 0:
            raise ConcurrencyError(stream, expected_version, -1 - result)
        self._signal.fire()
        return result

    async def _append(
        self, stream: str, expected_version: int, args: tuple[Any, ...], fence: Fence | None
    ) -> int:
        import asyncpg

        async with self._pool.acquire() as conn:
            try:
                if fence is None:
                    result: int = await conn.fetchval(self._sql_append, *args)
                else:
                    result = await self._fenced_append(conn, fence, args)
            except StaleEpoch:
                raise
            except asyncpg.UniqueViolationError:
                # another append to this stream took the version between our check and insert
                await conn.execute("SELECT pg_advisory_unlock_all()")
                actual = await conn.fetchval(
                    f"SELECT coalesce(max(version), 0) FROM {self.prefix}events WHERE stream = $1",
                    stream,
                )
                raise ConcurrencyError(stream, expected_version, actual) from None
            except asyncpg.PostgresError as exc:
                await conn.execute("SELECT pg_advisory_unlock_all()")
                raise EventStoreError(f"append to {stream!r} failed: {exc}") from exc
            except (OSError, asyncpg.InterfaceError) as exc:
                conn.terminate()
                raise EventStoreError(f"append to {stream!r}: lost the database: {exc}") from exc
            except BaseException:
                conn.terminate()  # cancelled mid-append: the server frees its lock with it
                raise
        return result

    async def _fenced_append(self, conn: Any, fence: Fence, args: tuple[Any, ...]) -> int:
        """The append in one transaction with its fence's check (refused when stale)."""
        async with conn.transaction():
            await self._check_fence(conn, fence)
            result: int = await conn.fetchval(self._sql_append, *args)
        return result

    async def _check_fence(self, conn: Any, fence: Fence) -> None:
        """In the caller's transaction: raise :class:`StaleEpoch` for a stale fence."""
        current = await conn.fetchval(self._sql_fence, fence.scope, fence.epoch)
        if current > fence.epoch:
            raise StaleEpoch(fence.scope, fence.epoch, int(current))

    async def read_stream(self, stream: str, from_version: int = 1) -> list[RecordedEvent]:
        rows = await self._fetch(self._sql_stream, stream, from_version)
        return [RecordedEvent(*row) for row in rows]

    async def read_all(self, after: int = 0, limit: int = 1000) -> list[RecordedEvent]:
        rows = await self._fetch(self._sql_all, after, limit)
        return [RecordedEvent(*row) for row in rows]

    async def head(self) -> int:
        p = self.prefix
        rows = await self._fetch(f"SELECT max(position) FROM {p}events WHERE {_visible(p)}")
        return int(rows[0][0] or 0)

    async def position_at(self, time: float) -> int:
        sql = f"SELECT min(position) FROM {self.prefix}events WHERE time >= $1"
        first = (await self._fetch(sql, time))[0][0]
        return (await self.head()) if first is None else int(first) - 1

    def subscribe(
        self, after: int = 0, *, batch: int = 1000
    ) -> AsyncGenerator[RecordedEvent, None]:
        return follow(
            self.read_all, self._signal, self._clock, after=after, batch=batch, poll=self._poll
        )

    async def query(self, sql: str, *params: object) -> list[tuple[object, ...]]:
        """Rows of a read-only query on this database (e.g. a projection's read model)."""
        return [tuple(row) for row in await self._fetch(sql, *params)]

    async def save_snapshot(self, snapshot: SnapshotRecord) -> None:
        p = self.prefix
        sql = (
            f"INSERT INTO {p}snapshots (stream, version, type, type_version, data) "
            "VALUES ($1, $2, $3, $4, $5) ON CONFLICT (stream) DO UPDATE SET "
            "version = excluded.version, type = excluded.type, "
            f"type_version = excluded.type_version, data = excluded.data "
            f"WHERE excluded.version > {p}snapshots.version"
        )
        s = snapshot
        await self._fetch(sql, s.stream, s.version, s.type, s.type_version, s.data)

    async def read_from_snapshot(
        self, stream: str
    ) -> tuple[SnapshotRecord | None, list[RecordedEvent]]:
        rows = await self._fetch(self._sql_from_snapshot, stream)
        if rows and rows[0][0] < 0:
            head = rows[0]
            snapshot = SnapshotRecord(stream, head[2], head[4], head[5], head[7])
            return snapshot, [RecordedEvent(*row) for row in rows[1:]]
        return None, [RecordedEvent(*row) for row in rows]

    async def load_snapshot(self, stream: str) -> SnapshotRecord | None:
        sql = (
            f"SELECT stream, version, type, type_version, data FROM {self.prefix}snapshots "
            "WHERE stream = $1"
        )
        rows = await self._fetch(sql, stream)
        return SnapshotRecord(*rows[0]) if rows else None

    async def checkpoint(self, name: str) -> int:
        sql = f"SELECT position FROM {self.prefix}checkpoints WHERE name = $1"
        rows = await self._fetch(sql, name)
        return int(rows[0][0]) if rows else 0

    async def checkpoints(self) -> dict[str, int]:
        rows = await self._fetch(f"SELECT name, position FROM {self.prefix}checkpoints")
        return {name: int(position) for name, position in sorted(rows)}

    async def commit_projection(
        self,
        name: str,
        expected: int,
        position: int,
        writes: Sequence[ProjectionWrite],
        *,
        fence: Fence | None = None,
    ) -> None:
        import asyncpg

        p = self.prefix
        if self._pool.is_closing():
            raise EventStoreError(f"event store {p}events is closed")
        try:
            with outside_the_loop():  # a virtual clock waits for the server
                async with self._pool.acquire() as conn, conn.transaction():
                    if fence is not None:
                        await self._check_fence(conn, fence)
                    await conn.execute(
                        f"INSERT INTO {p}checkpoints (name, position) VALUES ($1, 0) "
                        "ON CONFLICT (name) DO NOTHING",
                        name,
                    )
                    actual = await conn.fetchval(
                        f"SELECT position FROM {p}checkpoints WHERE name = $1 FOR UPDATE", name
                    )
                    if actual != expected:
                        raise ConcurrencyError(f"projection {name}", expected, actual)
                    for sql, group in groupby(writes, key=lambda w: w.sql):
                        params = [w.params for w in group]
                        if params == [()]:
                            await conn.execute(sql)
                        else:
                            await conn.executemany(sql, params)
                    await conn.execute(
                        f"UPDATE {p}checkpoints SET position = $2 WHERE name = $1", name, position
                    )
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            raise EventStoreError(f"projection {name!r} could not commit: {exc}") from exc

    async def drop(self) -> None:
        """Remove this store's tables and function (tests; irreversible)."""
        p = self.prefix
        await self._pool.execute(
            f"DROP TABLE IF EXISTS {p}events, {p}snapshots, {p}checkpoints, {p}fences; "
            f"DROP FUNCTION IF EXISTS {p}append, {p}horizon, {p}fence"
        )

    async def close(self) -> None:
        self._closed = True
        await self._readers.close()
        await self._pool.close()

    async def __aenter__(self) -> PostgresEventStore:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
