"""The outbox in a PostgreSQL database, on asyncpg.

A transaction is one of the service's own (a pool connection, or a connection
the service passes in): its statements run on :attr:`PostgresTransaction.connection`,
and on a clean exit the outgoing messages are inserted just before ``COMMIT``.

**Commit order per aggregate.** Row positions come from an identity column,
so they are handed out at insert, not at commit: two transactions writing
messages of one aggregate could commit in the opposite order of their
positions. So the insert first takes a transaction-level advisory lock per
aggregate id (in sorted order, so two writers never wait on each other in a
circle) and keeps it to the commit: a second writer of that aggregate inserts
only after the first ended. Positions of one aggregate therefore follow
commit order, and a committed row's predecessors are committed too. As the
insert is the last statement before the commit, the lock is held only for
the commit itself.

**Several relays.** Rows fall into ``partitions`` buckets by a hash of their
aggregate id. A relay claims buckets, not rows: ``SELECT ... FROM
{prefix}outbox_partitions ... FOR UPDATE SKIP LOCKED`` inside its transaction,
then, in a statement of its own (whose snapshot sees what the bucket's previous
holder committed), reads the claimed buckets' rows by position, publishes them,
deletes (or marks) them and commits. Another relay skips the locked buckets and takes
others, so relays share the work and one aggregate is only ever published by
one of them at a time, in order. A relay that dies mid-batch loses its
connection, its transaction rolls back, and the rows are claimed again
(at-least-once).

``sync`` is the fsync policy of :mod:`seawall._fsync` as ``synchronous_commit``
on the outbox's own pool: ``"none"`` is ``off`` (a server crash may lose the
last commits), anything else ``on``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from .._clock import Clock, SystemClock, outside_the_loop
from .._exceptions import ConfigurationError, OutboxError
from .._fsync import SyncPolicy, parse_sync
from .._runtime.context import Context
from .._transport.options import redact
from ._outbox import InboxEntry, Outbox, OutboxTransaction
from ._pgshared import PREFIX, ROW_COLUMNS, Translate, schema
from ._rows import OutboxRow, stored_row

__all__ = ["PostgresOutbox", "PostgresTransaction"]

_DEFAULT_PARTITIONS = 16


def _rows_of(records: list[Any]) -> list[OutboxRow]:
    return [stored_row(record) for record in records]


class PostgresTransaction(OutboxTransaction):
    """A transaction on one of the service's PostgreSQL connections, with its messages."""

    def __init__(self, outbox: PostgresOutbox, connection: Any, context: Context) -> None:
        super().__init__(context, partitions=outbox.partitions)
        self._outbox = outbox
        self.connection = connection
        """The asyncpg connection in this transaction: run the service's statements on it."""

    async def _flush(self) -> None:
        rows = self._rows
        if not rows:
            return
        await self.connection.execute(
            f"SELECT {self._outbox.prefix}outbox_write($1, $2, $3, $4, $5, $6, $7, $8)",
            [r.id for r in rows],
            [r.aggregatetype for r in rows],
            [r.aggregateid for r in rows],
            [r.type for r in rows],
            [r.payload for r in rows],
            [r.headers for r in rows],
            [r.channel for r in rows],
            [r.partition for r in rows],
        )

    async def _inbox_claim(self, consumer: str, message_id: str) -> InboxEntry | None:
        p = self._outbox.prefix
        with self._outbox._errors(f"claiming {message_id} for {consumer!r} in the inbox"):
            new = await self.connection.fetchval(
                f"INSERT INTO {p}inbox (consumer, message_id, handled_at) VALUES ($1, $2, $3) "
                "ON CONFLICT DO NOTHING RETURNING true",
                consumer,
                message_id,
                self._outbox.clock.time(),  # the clock the inbox expires by
            )
            if new:
                return None
            return await self._outbox._entry(self.connection, consumer, message_id)

    async def _inbox_reply(self, consumer: str, message_id: str, type: str, reply: bytes) -> None:
        p = self._outbox.prefix
        with self._outbox._errors(f"keeping the reply to {message_id} in the inbox"):
            await self.connection.execute(
                f"UPDATE {p}inbox SET reply_type = $3, reply = $4 "
                "WHERE consumer = $1 AND message_id = $2",
                consumer,
                message_id,
                type,
                reply,
            )


class PostgresOutbox(Outbox[PostgresTransaction]):
    """A service's PostgreSQL database with an outbox and an inbox; open it with :meth:`open`.

    ``retention`` None (the default) deletes rows once published; a number of
    seconds marks them published instead and deletes them that much later.
    """

    def __init__(
        self,
        pool: Any,
        *,
        prefix: str,
        partitions: int,
        retention: float | None,
        clock: Clock,
        owns_pool: bool,
    ) -> None:
        super().__init__()
        self._pool = pool
        self._owns_pool = owns_pool
        self.prefix = prefix
        self.partitions = partitions
        self.retention = retention
        self.clock = clock
        self._turn = 0
        """Where this relay starts looking for a free bucket, so relays spread out."""

    @classmethod
    async def open(
        cls,
        dsn: str | None = None,
        *,
        pool: Any = None,
        prefix: str = "",
        partitions: int | None = None,
        retention: float | None = None,
        clock: Clock | None = None,
        max_connections: int = 10,
        sync: SyncPolicy = "always",
    ) -> PostgresOutbox:
        """Connect to ``dsn`` (or use the service's asyncpg ``pool``) and create the tables.

        ``partitions`` (default 16) is fixed when the tables are created; opening them
        with another number is refused.
        """
        if not PREFIX.match(prefix):
            raise ConfigurationError(
                f"table prefix {prefix!r} must be lower-case letters, digits and '_'"
            )
        if (dsn is None) == (pool is None):
            raise ConfigurationError("PostgresOutbox.open takes a dsn or a pool (one of them)")
        owns = pool is None
        if owns:
            pool = await _connect(
                dsn or "", parse_sync(sync, where="PostgresOutbox.open"), max_connections
            )
        outbox = cls(
            pool,
            prefix=prefix,
            partitions=partitions or _DEFAULT_PARTITIONS,
            retention=retention,
            clock=clock or SystemClock(),
            owns_pool=owns,
        )
        try:
            outbox.partitions = await outbox._create(partitions)
        except BaseException:
            await outbox.close()
            raise
        return outbox

    def _errors(self, what: str) -> Translate:
        return Translate(f"outbox {self.prefix}outbox: {what}")

    async def _create(self, partitions: int | None) -> int:
        p = self.prefix
        with self._errors("creating the tables"), outside_the_loop():
            async with self._pool.acquire() as conn, conn.transaction():
                # one creator at a time: CREATE ... IF NOT EXISTS races with itself
                await conn.execute("SELECT pg_advisory_xact_lock(hashtext('seawall-outbox-ddl'))")
                await conn.execute(schema(p))
                known = await conn.fetchval(f"SELECT count(*) FROM {p}outbox_partitions")
                if known == 0:
                    await conn.execute(
                        f"INSERT INTO {p}outbox_partitions SELECT generate_series(0, $1 - 1)",
                        partitions or _DEFAULT_PARTITIONS,
                    )
                    return partitions or _DEFAULT_PARTITIONS
        if partitions is not None and partitions != known:
            raise ConfigurationError(
                f"the outbox table {p}outbox was created with {known} partitions, not "
                f"{partitions}; open it with partitions={known} (or none)"
            )
        return int(known)

    # -- transactions -------------------------------------------------------------------

    @asynccontextmanager
    async def transaction(
        self, context: Context, *, connection: Any = None
    ) -> AsyncIterator[PostgresTransaction]:
        """A transaction on ``connection`` (default: one from the outbox's pool).

        On a connection already in a transaction, this one is a savepoint in it: the
        messages are inserted when the savepoint is released, committed with the rest.
        While it is open a virtual clock stands still (the service's statements run on
        the server, where the test's clock cannot see them): do not sleep inside it.
        """
        with outside_the_loop():
            if connection is not None:
                async with self._transaction(connection, context) as tx:
                    yield tx
                return
            with self._errors("taking a connection"):
                held = await self._pool.acquire()
            try:
                async with self._transaction(held, context) as tx:
                    yield tx
            finally:
                await self._pool.release(held)

    @asynccontextmanager
    async def _transaction(self, conn: Any, context: Context) -> AsyncIterator[PostgresTransaction]:
        with self._errors("beginning a transaction"):
            transaction = conn.transaction()
            await transaction.start()
        tx = PostgresTransaction(self, conn, context)
        try:
            yield tx
            with self._errors("writing the outgoing messages and committing"):
                await tx._flush()
                await transaction.commit()
        except BaseException:
            if not conn.is_closed():
                with self._errors("rolling back"):
                    await transaction.rollback()
            raise
        if tx._rows:
            self._announce()

    async def _entry(self, conn: Any, consumer: str, message_id: str) -> InboxEntry | None:
        row = await conn.fetchrow(
            f"SELECT handled_at, reply_type, reply FROM {self.prefix}inbox "
            "WHERE consumer = $1 AND message_id = $2",
            consumer,
            message_id,
        )
        return None if row is None else InboxEntry(consumer, message_id, *row)

    # -- the relay's side ----------------------------------------------------------------

    @asynccontextmanager
    async def claim(
        self, limit: int, *, buckets: int | None = None
    ) -> AsyncIterator[list[OutboxRow]]:
        """Claim up to ``buckets`` partitions (default: all free ones) and their first rows."""
        self._turn += 1
        with outside_the_loop():
            async with self._claimed(limit, buckets or self.partitions) as (conn, records):
                rows = _rows_of(records)
                yield rows
                if rows:
                    with self._errors("settling published rows"):
                        await self._settle(conn, [r.position for r in rows])

    @asynccontextmanager
    async def _claimed(self, limit: int, buckets: int) -> AsyncIterator[tuple[Any, list[Any]]]:
        with self._errors("claiming rows to publish"):
            conn = await self._pool.acquire()
        try:
            with self._errors("claiming rows to publish"):
                transaction = conn.transaction()
                await transaction.start()
                records = await self._claim_rows(conn, limit, buckets)
            try:
                yield conn, records
            except BaseException:
                if not conn.is_closed():
                    with self._errors("rolling back a claim"):
                        await transaction.rollback()
                raise
            with self._errors("committing a claim"):
                await transaction.commit()
        finally:
            await self._pool.release(conn)

    async def _claim_rows(self, conn: Any, limit: int, buckets: int) -> list[Any]:
        """Lock free buckets with rows, then read their first rows: two statements.

        The rows are read by a statement of their own, started once the locks are
        held: in READ COMMITTED its snapshot then sees what the relay that held a
        bucket before committed (the rows it deleted), which one statement that locks
        and reads would not (its snapshot is taken before it waits for a lock).
        """
        p = self.prefix
        claimed = await conn.fetch(
            f"""SELECT partition FROM {p}outbox_partitions AS b
                WHERE (SELECT o.position FROM {p}outbox AS o
                       WHERE o.partition = b.partition AND o.published_at IS NULL
                       ORDER BY o.position LIMIT 1) IS NOT NULL
                ORDER BY (partition + $2) % $3
                LIMIT $1
                FOR UPDATE SKIP LOCKED""",
            buckets,
            self._turn,
            self.partitions,
        )
        if not claimed:
            return []
        # each claimed bucket's first rows by position (index only), the first `limit` of
        # those, then their columns: a bounded read, whatever the backlog
        records: list[Any] = await conn.fetch(
            f"""WITH picked AS (
                    SELECT first.position FROM unnest($1::smallint[]) AS c(partition),
                    LATERAL (SELECT o.position FROM {p}outbox AS o
                             WHERE o.partition = c.partition AND o.published_at IS NULL
                             ORDER BY o.position LIMIT $2) AS first
                    ORDER BY first.position LIMIT $2)
                SELECT position, {ROW_COLUMNS} FROM {p}outbox
                WHERE position IN (SELECT position FROM picked) ORDER BY position""",
            [record[0] for record in claimed],
            limit,
        )
        return records

    async def _settle(self, conn: Any, positions: list[int]) -> None:
        p = self.prefix
        if self.retention is None:
            await conn.execute(
                f"DELETE FROM {p}outbox WHERE position = ANY($1::bigint[])", positions
            )
            return
        now = self.clock.time()
        await conn.execute(
            f"UPDATE {p}outbox SET published_at = $2 WHERE position = ANY($1::bigint[])",
            positions,
            now,
        )
        await conn.execute(f"DELETE FROM {p}outbox WHERE published_at < $1", now - self.retention)

    async def _fetchval(self, what: str, sql: str, *args: Any) -> Any:
        with self._errors(what), outside_the_loop():
            return await self._pool.fetchval(sql, *args)

    async def pending(self) -> int:
        sql = f"SELECT count(*) FROM {self.prefix}outbox WHERE published_at IS NULL"
        return int(await self._fetchval("counting waiting rows", sql))

    async def inbox_entry(self, consumer: str, message_id: str) -> InboxEntry | None:
        with self._errors("reading the inbox"), outside_the_loop():
            async with self._pool.acquire() as conn:
                return await self._entry(conn, consumer, message_id)

    async def expire_inbox(self, before: float) -> int:
        sql = f"DELETE FROM {self.prefix}inbox WHERE handled_at < $1"
        with self._errors("expiring inbox entries"), outside_the_loop():
            status: str = await self._pool.execute(sql, before)
        return int(status.rsplit(" ", 1)[-1])

    async def drop(self) -> None:
        """Remove this outbox's tables and function (tests; irreversible)."""
        p = self.prefix
        with self._errors("dropping the tables"):
            await self._pool.execute(
                f"DROP TABLE IF EXISTS {p}outbox, {p}outbox_partitions, {p}outbox_tailing, "
                f"{p}inbox; "
                f"DROP FUNCTION IF EXISTS {p}outbox_write"
            )

    async def close(self) -> None:
        if self._owns_pool:
            await self._pool.close()


async def _connect(dsn: str, sync: SyncPolicy, max_connections: int) -> Any:
    try:
        import asyncpg
    except ImportError:  # pragma: no cover - depends on the install
        raise ConfigurationError(
            "PostgresOutbox needs asyncpg: pip install 'seawall[postgres]'"
        ) from None
    try:
        return await asyncpg.create_pool(
            dsn,
            min_size=1,
            max_size=max_connections,
            server_settings={"synchronous_commit": "off" if sync == "none" else "on"},
        )
    except (OSError, asyncpg.PostgresError) as exc:
        raise OutboxError(f"cannot open the outbox database at {redact(dsn)}: {exc}") from exc
