"""Transaction log tailing: publish the outbox table's inserts as PostgreSQL's WAL has them.

A polling relay asks the table what is new; this one reads the database's
own log of commits through a logical replication slot (plugin ``pgoutput``,
a publication of the outbox table's inserts), the way Debezium does. The
log holds committed transactions only, in commit order, so a rolled-back
transaction is never published and one aggregate's messages come in the
order their transactions committed, without the table being scanned.

Each step, over one connection of its own:

1. *peeks* at the slot's next changes, at most ``batch`` messages (whole
   transactions: a transaction bigger than that comes whole);
2. publishes their rows (per aggregate in commit order, up to ``window``
   aggregates at once) and waits until the transport has them;
3. deletes the published rows from the table (``delete=True``, the default;
   the log keeps what the relay needs, the table need not);
4. only then advances the slot, past the last transaction (or heartbeat) read;
5. when there was nothing to read and the slot holds back more than
   ``heartbeat`` bytes of WAL written by the rest of the database, commits a
   heartbeat (a transactional ``pg_logical_emit_message``: a commit, so it is
   flushed and decoded at once) that the next step reads and moves the slot
   past, so a quiet outbox does not make the server keep WAL.

A crash anywhere before 4 leaves the slot where it was: the next step (in
this process or after a restart) peeks the same transactions and publishes
them again, under the same message ids. At-least-once, nothing lost.

A new slot sees only what commits after it was made. So before its first
peek a relay publishes the rows already in the table, by position (a flag
in ``{prefix}outbox_tailing`` records, per slot, that this was done; a crash
midway does it again): nothing committed before the relay existed is left
behind, e.g. when a service moves from the polling relay to this one.

One relay per slot publishes at a time: each holds a session advisory lock
on the slot's name while it works; a second relay (a standby) finds it taken
and waits, and takes over when the first one's connection ends.

**What the server needs**: ``wal_level = logical`` (a restart), a free
replication slot (``max_replication_slots``, 10 by default), and a role with
the ``REPLICATION`` attribute (or a superuser) that owns the outbox table
(to create the publication); PostgreSQL 14 or later (``pgoutput``'s
``messages`` option). A slot keeps every WAL segment it has not
confirmed: drop the slot (:meth:`LogTailingRelay.drop`) when the relay is
retired, or the disk fills.
"""

from __future__ import annotations

import contextlib
import re
from typing import Any

from .._clock import Clock, SystemClock, outside_the_loop
from .._exceptions import ConfigurationError, OutboxError
from .._transport import Transport
from .._transport.options import redact
from ._pgoutput import ChangeReader, Committed, format_lsn
from ._pgshared import PREFIX, ROW_COLUMNS, Translate, driver_errors
from ._relay import RelayStats, publish_in_order, relay_forever
from ._rows import OutboxRow, stored_row

__all__ = ["LogTailingRelay"]

_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


class LogTailingRelay:
    """Publishes an outbox table's committed inserts from a logical replication slot.

    ``batch`` decoded messages per step at most, ``window`` aggregates published at
    once; ``delete`` removes published rows; ``heartbeat`` is how many bytes of WAL a
    quiet outbox may hold back before the relay writes a heartbeat to move the slot.
    """

    def __init__(
        self,
        dsn: str,
        transport: Transport,
        *,
        prefix: str = "",
        schema: str = "public",
        slot: str | None = None,
        publication: str | None = None,
        batch: int = 1000,
        window: int = 64,
        poll: float = 0.2,
        delete: bool = True,
        heartbeat: int = 1 << 20,
        clock: Clock | None = None,
    ) -> None:
        if not PREFIX.match(prefix):
            raise ConfigurationError(
                f"table prefix {prefix!r} must be lower-case letters, digits and '_'"
            )
        self.slot = slot or f"seawall_{prefix}outbox"
        self.publication = publication or f"seawall_{prefix}outbox"
        for what, name in (("slot", self.slot), ("publication", self.publication)):
            if not _NAME.match(name):
                raise ConfigurationError(
                    f"replication {what} name {name!r} must be lower-case letters, digits and "
                    "'_', at most 63"
                )
        if batch < 1 or window < 1 or poll <= 0:
            raise ConfigurationError(
                f"LogTailingRelay needs batch >= 1, window >= 1 and poll > 0; got batch={batch}, "
                f"window={window}, poll={poll}"
            )
        self.dsn = dsn
        self.transport = transport
        self.table = f"{prefix}outbox"
        self.schema = schema
        self._batch = batch
        self._window = window
        self._poll = poll
        self._delete = delete
        self._heartbeat_bytes = heartbeat
        self._clock = clock or SystemClock()
        self._stats = RelayStats()
        self._conn: Any = None
        self._active = False
        """Whether this relay holds the slot's lock (is the one publishing)."""
        self._confirmed = 0
        """The slot position this relay last advanced to."""
        self._caught_up = False
        """Whether the rows older than the slot are known to be published."""

    @classmethod
    async def open(cls, dsn: str, transport: Transport, **options: Any) -> LogTailingRelay:
        """Connect, check the server, create the publication and the slot if missing, and
        (if no other relay holds the slot) publish the rows older than the slot."""
        relay = cls(dsn, transport, **options)
        try:
            await relay._prepare()
            conn = await relay._connection()
            with relay._errors("taking the slot"), outside_the_loop():
                leader = await relay._take_slot(conn)
            if leader:  # at once: the fewer rows commit between slot and catch-up, the better
                await relay._catch_up(conn)
        except BaseException:
            await relay.close()
            raise
        return relay

    def statistics(self) -> RelayStats:
        """The relay's counters (one live object); ``position`` is the slot's LSN."""
        return self._stats

    # -- the connection and the slot ------------------------------------------------

    async def _connection(self) -> Any:
        if self._conn is not None and not self._conn.is_closed():
            return self._conn
        import asyncpg

        self._active = False
        with self._errors("connecting"), outside_the_loop():
            self._conn = await asyncpg.connect(
                self.dsn, server_settings={"bytea_output": "hex", "application_name": self.slot}
            )
        return self._conn

    def _errors(self, what: str) -> Translate:
        return Translate(f"log tailing relay {self.slot!r} at {redact(self.dsn)}: {what}")

    async def _prepare(self) -> None:
        conn = await self._connection()
        with self._errors("preparing the slot"), outside_the_loop():
            level = await conn.fetchval("SHOW wal_level")
            if level != "logical":
                raise ConfigurationError(
                    f"log tailing needs wal_level = logical, and the server at "
                    f"{redact(self.dsn)} runs wal_level = {level}: set it (ALTER SYSTEM SET "
                    "wal_level = logical) and restart the server, or use a PollingRelay"
                )
            table = f"{self.schema}.{self.table}"
            if await conn.fetchval("SELECT to_regclass($1)", table) is None:
                raise ConfigurationError(
                    f"there is no outbox table {table}; open a PostgresOutbox on this "
                    "database (it creates the tables) before its relay"
                )
            await conn.execute(
                f"CREATE TABLE IF NOT EXISTS {table}_tailing "
                "(slot text PRIMARY KEY, caught_up boolean NOT NULL)"
            )
            # before the slot: until the rows older than it are published, it says so
            await conn.execute(
                f"INSERT INTO {table}_tailing VALUES ($1, false) ON CONFLICT DO NOTHING",
                self.slot,
            )
            await self._create_publication(conn, table)
            await self._create_slot(conn)

    async def _create_publication(self, conn: Any, table: str) -> None:
        import asyncpg

        exists = await conn.fetchval(
            "SELECT 1 FROM pg_publication WHERE pubname = $1", self.publication
        )
        if not exists:
            with contextlib.suppress(asyncpg.DuplicateObjectError):  # another relay was first
                await conn.execute(
                    f"CREATE PUBLICATION {self.publication} FOR TABLE {table} "
                    "WITH (publish = 'insert')"
                )

    async def _create_slot(self, conn: Any) -> None:
        import asyncpg

        exists = await conn.fetchval(
            "SELECT 1 FROM pg_replication_slots WHERE slot_name = $1", self.slot
        )
        if not exists:
            with contextlib.suppress(asyncpg.DuplicateObjectError):  # another relay was first
                await conn.execute(
                    "SELECT pg_create_logical_replication_slot($1, 'pgoutput')", self.slot
                )

    async def _take_slot(self, conn: Any) -> bool:
        """Hold the slot's lock (be the relay that publishes); False if another has it."""
        if not self._active:
            self._active = await conn.fetchval(
                "SELECT pg_try_advisory_lock(hashtext('seawall-outbox-slot'), hashtext($1))",
                self.slot,
            )
        return self._active

    # -- publishing --------------------------------------------------------------------

    async def step(self) -> int:
        """Publish the next committed transactions (one batch); how many rows they held."""
        conn = await self._connection()
        try:
            with self._errors("taking the slot"), outside_the_loop():
                if not await self._take_slot(conn):
                    return 0  # a standby: another relay publishes this slot
            if not self._caught_up and (caught := await self._catch_up(conn)):
                return caught
            changes = await self._peek(conn)
            rows, upto = self._read(changes)
            await publish_in_order(self.transport, rows, window=self._window, stats=self._stats)
            await self._settle(conn, [row.id for row in rows], upto)
            if not changes:
                await self._heartbeat(conn)
        except BaseException:
            await self._drop_connection_if_broken()
            raise
        if rows:
            self._stats.batches += 1
        return len(rows)

    async def _peek(self, conn: Any) -> list[Any]:
        """The slot's next messages (whole transactions), without consuming them."""
        with self._errors("reading the slot"), outside_the_loop():
            changes: list[Any] = await conn.fetch(
                "SELECT data FROM pg_logical_slot_peek_binary_changes($1, NULL, $2, "
                "'proto_version', '1', 'publication_names', $3, 'messages', 'true')",
                self.slot,
                self._batch,
                self.publication,
            )
        return changes

    def _read(self, changes: list[Any]) -> tuple[list[OutboxRow], int]:
        """The outbox rows of the transactions read, and where the slot may move to."""
        reader = ChangeReader(self.table, schema=self.schema)
        rows: list[OutboxRow] = []
        upto = 0
        for change in changes:
            done = reader.feed(change[0])
            if isinstance(done, Committed):
                rows += done.rows
            if done is not None:
                upto = done.end_lsn
        return rows, upto

    async def _settle(self, conn: Any, ids: list[str], upto: int) -> None:
        """Delete the published rows, then advance the slot to ``upto`` (if it moves it)."""
        with self._errors("settling a published batch"), outside_the_loop():
            if ids and self._delete:
                await conn.execute(
                    f"DELETE FROM {self.schema}.{self.table} WHERE id = ANY($1::uuid[])", ids
                )
            if upto > self._confirmed:
                await conn.execute(
                    "SELECT pg_replication_slot_advance($1, $2::text::pg_lsn)",
                    self.slot,
                    format_lsn(upto),
                )
                self._confirmed = upto
                self._stats.position = format_lsn(upto)

    async def _catch_up(self, conn: Any) -> int:
        """Publish the rows committed before the slot existed: the slot never sees them.

        Once per slot (a flag in ``{prefix}outbox_tailing``, set when done, so a crash
        midway starts it again): every row still in the table, by position, which per
        aggregate is commit order. Rows committed after the slot was made come through
        it too, so some are published twice (at-least-once, as ever).
        """
        table = f"{self.schema}.{self.table}"
        total, after = 0, 0
        with self._errors("publishing the rows older than the slot"), outside_the_loop():
            if await conn.fetchval(
                f"SELECT caught_up FROM {table}_tailing WHERE slot = $1", self.slot
            ):
                self._caught_up = True
                return 0
            while records := await conn.fetch(
                f"SELECT position, {ROW_COLUMNS} FROM {table} WHERE position > $1 "
                "AND published_at IS NULL ORDER BY position LIMIT $2",
                after,
                self._batch,
            ):
                rows = [stored_row(record) for record in records]
                await publish_in_order(self.transport, rows, window=self._window, stats=self._stats)
                await self._settle(conn, [row.id for row in rows], 0)
                total, after = total + len(rows), rows[-1].position
            await conn.execute(
                f"UPDATE {table}_tailing SET caught_up = true WHERE slot = $1", self.slot
            )
        self._caught_up = True
        return total

    async def _heartbeat(self, conn: Any) -> None:
        """Write a heartbeat if the slot holds back more than ``heartbeat`` bytes of WAL."""
        with self._errors("writing a heartbeat"), outside_the_loop():
            await conn.execute(
                "SELECT pg_logical_emit_message(true, 'seawall-outbox', slot_name) "
                "FROM pg_replication_slots WHERE slot_name = $1 "
                "AND pg_current_wal_lsn() - confirmed_flush_lsn > $2",
                self.slot,
                self._heartbeat_bytes,
            )

    async def _drop_connection_if_broken(self) -> None:
        if self._conn is not None and self._conn.is_closed():
            self._conn = None
            self._active = False

    async def drain(self) -> int:
        """Publish every transaction committed so far; how many rows were published."""
        total = 0
        while (done := await self.step()) > 0:
            total += done
        return total

    async def run(self) -> None:
        """Publish as transactions commit, until cancelled; failures back off and retry."""
        await relay_forever(
            f"log tailing relay {self.slot}",
            self._step_or_reconnect,
            batch=1,  # never skip the wait on a row count: a batch is counted in messages
            clock=self._clock,
            poll=self._poll,
            stats=self._stats,
        )

    async def _step_or_reconnect(self) -> int:
        try:
            return await self.step()
        except OutboxError:
            await self.close()  # a fresh connection next time (and the lock taken again)
            raise

    async def lag(self) -> int:
        """Bytes of WAL the slot has not confirmed yet (what it holds back on the server)."""
        conn = await self._connection()
        with self._errors("reading the slot's lag"), outside_the_loop():
            lag = await conn.fetchval(
                "SELECT pg_current_wal_lsn() - confirmed_flush_lsn FROM pg_replication_slots "
                "WHERE slot_name = $1",
                self.slot,
            )
        return int(lag or 0)

    async def drop(self) -> None:
        """Remove the slot and the publication: the server stops keeping WAL for this relay."""
        conn = await self._connection()
        with self._errors("dropping the slot"), outside_the_loop():
            if self._active:
                await conn.execute(
                    "SELECT pg_advisory_unlock(hashtext('seawall-outbox-slot'), hashtext($1))",
                    self.slot,
                )
                self._active = False
            await conn.execute(
                "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots "
                "WHERE slot_name = $1",
                self.slot,
            )
            await conn.execute(f"DROP PUBLICATION IF EXISTS {self.publication}")
            await conn.execute(
                f"DELETE FROM {self.schema}.{self.table}_tailing WHERE slot = $1", self.slot
            )

    async def close(self) -> None:
        """Close the connection (the slot stays: a relay opened later resumes from it)."""
        conn, self._conn = self._conn, None
        self._active = False
        if conn is not None and not conn.is_closed():
            failures: tuple[type[BaseException], ...] = (*driver_errors(), TimeoutError)
            try:
                await conn.close(timeout=5)
            except failures:
                conn.terminate()
