"""The outbox in a SQLite file, on the standard library's sqlite3.

The service's tables, the outbox and the inbox live in one file (WAL mode).
SQLite has one writer at a time, so this outbox has one writer too: a thread
with its own connection, on which every transaction's statements run, one
transaction after the other (``BEGIN IMMEDIATE`` ... ``COMMIT``). The service
runs its own statements through the :class:`SQLiteTransaction` it gets
(:meth:`~SQLiteTransaction.execute`, :meth:`~SQLiteTransaction.fetchall`,
:meth:`~SQLiteTransaction.run` for anything else), so they commit together
with the outgoing messages and the inbox entry.

With one writer, row positions (``AUTOINCREMENT``, never reused) are handed
out in commit order, so a relay that reads the outbox by position publishes
in commit order. A relay reads through a second connection (WAL lets it read
while the writer writes) and deletes, or marks, what it published through
the writer. One relay per file: a second one, in this process or another, is
refused (a lock file beside the database says who relays).

``sync`` is the fsync policy of :mod:`seawall._fsync`: ``"always"`` (the
default) and ``"batch"`` fsync each commit (``synchronous=FULL``), ``"none"``
leaves it to WAL checkpoints (a power loss may lose the last commits).
"""

from __future__ import annotations

import asyncio
import re
import sqlite3
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from pathlib import Path
from typing import IO, Any, TypeVar

from .._clock import Clock, SystemClock
from .._exceptions import ConfigurationError, OutboxError
from .._fsync import SyncPolicy, parse_sync
from .._runtime.context import Context
from ._outbox import InboxEntry, Outbox, OutboxTransaction
from ._rows import OutboxRow, stored_row

__all__ = ["SQLiteOutbox", "SQLiteTransaction"]

R = TypeVar("R")

_PREFIX = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$|^$")
_ROW_COLUMNS = "id, aggregatetype, aggregateid, type, payload, headers, channel, partition"


def _schema(p: str) -> str:
    return f"""
    CREATE TABLE IF NOT EXISTS {p}outbox (
        position INTEGER PRIMARY KEY AUTOINCREMENT,
        id TEXT NOT NULL UNIQUE,
        aggregatetype TEXT NOT NULL,
        aggregateid TEXT NOT NULL,
        type TEXT NOT NULL,
        payload BLOB NOT NULL,
        headers TEXT NOT NULL,
        channel TEXT NOT NULL,
        partition INTEGER NOT NULL,
        published_at REAL
    );
    CREATE INDEX IF NOT EXISTS {p}outbox_waiting ON {p}outbox (position)
        WHERE published_at IS NULL;
    CREATE INDEX IF NOT EXISTS {p}outbox_published ON {p}outbox (published_at)
        WHERE published_at IS NOT NULL;
    CREATE TABLE IF NOT EXISTS {p}inbox (
        consumer TEXT NOT NULL,
        message_id TEXT NOT NULL,
        handled_at REAL NOT NULL,
        reply_type TEXT,
        reply BLOB,
        PRIMARY KEY (consumer, message_id)
    ) WITHOUT ROWID;
    CREATE INDEX IF NOT EXISTS {p}inbox_age ON {p}inbox (handled_at);
    """


class SQLiteTransaction(OutboxTransaction):
    """A transaction on the SQLite outbox's writer: the service's statements and its messages."""

    def __init__(self, outbox: SQLiteOutbox, context: Context) -> None:
        super().__init__(context, partitions=outbox.partitions)
        self._outbox = outbox
        self._open = True

    async def run(self, fn: Callable[[sqlite3.Connection], R]) -> R:
        """Run ``fn(connection)`` on the writer thread, inside this transaction."""
        if not self._open:
            raise OutboxError("this outbox transaction has ended; open another to write")
        return await self._outbox._run(fn)

    async def execute(self, sql: str, *params: object) -> int:
        """Run one statement; the number of rows it changed."""
        return await self.run(lambda db: db.execute(sql, params).rowcount)

    async def executemany(self, sql: str, rows: Iterable[Sequence[object]]) -> int:
        """Run one statement once per parameter row; the number of rows changed."""
        rows = list(rows)
        return await self.run(lambda db: db.executemany(sql, rows).rowcount)

    async def fetchall(self, sql: str, *params: object) -> list[tuple[Any, ...]]:
        """The rows of a query, as tuples."""
        return await self.run(lambda db: [tuple(r) for r in db.execute(sql, params).fetchall()])

    async def fetchone(self, sql: str, *params: object) -> tuple[Any, ...] | None:
        """The first row of a query, or None."""
        row = await self.run(lambda db: db.execute(sql, params).fetchone())
        return None if row is None else tuple(row)

    async def _inbox_claim(self, consumer: str, message_id: str) -> InboxEntry | None:
        now = self._outbox.clock.time()  # the clock the inbox expires by
        return await self.run(lambda db: self._outbox._claim_entry(db, consumer, message_id, now))

    async def _inbox_reply(self, consumer: str, message_id: str, type: str, reply: bytes) -> None:
        sql = f"UPDATE {self._outbox.prefix}inbox SET reply_type = ?, reply = ? "
        await self.execute(
            sql + "WHERE consumer = ? AND message_id = ?", type, reply, consumer, message_id
        )


class SQLiteOutbox(Outbox[SQLiteTransaction]):
    """A service's SQLite database with an outbox and an inbox table; open it with :meth:`open`.

    ``retention`` None (the default) deletes rows once published; a number of
    seconds marks them published instead and deletes them that much later.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        prefix: str = "",
        partitions: int = 16,
        retention: float | None = None,
        sync: SyncPolicy = "always",
        clock: Clock | None = None,
    ) -> None:
        super().__init__()
        if not _PREFIX.match(prefix):
            raise ConfigurationError(
                f"table prefix {prefix!r} must be letters, digits and '_' (not first a digit)"
            )
        if partitions < 1:
            raise ConfigurationError(f"partitions must be at least 1, got {partitions}")
        self.path = str(path)
        self.prefix = prefix
        self.partitions = partitions
        self.retention = retention
        self.sync = parse_sync(sync, where=f"SQLiteOutbox({self.path!r})")
        self.clock = clock or SystemClock()
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="seawall-outbox-sqlite")
        self._writer: sqlite3.Connection | None = None
        self._reader: sqlite3.Connection | None = None
        self._writing = asyncio.Lock()
        self._claiming = asyncio.Lock()
        self._relay_lock: IO[bytes] | None = None
        self._closed = False

    @classmethod
    async def open(cls, path: str | Path, **options: Any) -> SQLiteOutbox:
        """Open (creating the tables if needed) the outbox in the file at ``path``."""
        outbox = cls(path, **options)
        try:
            outbox._writer = await outbox._call(outbox._connect, True)
            outbox._reader = outbox._connect(False)
        except BaseException:
            await outbox.close()
            raise
        return outbox

    def _connect(self, create: bool) -> sqlite3.Connection:
        try:
            conn = sqlite3.connect(
                self.path, isolation_level=None, timeout=30.0, check_same_thread=False
            )
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute(f"PRAGMA synchronous={'NORMAL' if self.sync == 'none' else 'FULL'}")
            if create:
                conn.executescript(_schema(self.prefix))
        except sqlite3.Error as exc:
            raise OutboxError(f"cannot open the outbox database {self.path!r}: {exc}") from exc
        return conn

    async def _call(self, fn: Callable[..., R], *args: Any) -> R:
        """``fn(*args)`` on the writer thread, its sqlite3 errors as :class:`OutboxError`."""
        if self._closed:
            raise OutboxError(f"outbox {self.path!r} is closed")
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._thread, fn, *args)
        except sqlite3.Error as exc:
            raise OutboxError(f"outbox database {self.path!r}: {exc}") from exc

    async def _run(self, fn: Callable[[sqlite3.Connection], R]) -> R:
        """``fn(writer)`` on the writer thread."""
        return await self._call(lambda: fn(self._connection()))

    def _connection(self) -> sqlite3.Connection:
        if self._writer is None:
            raise OutboxError(f"outbox {self.path!r} is closed (or was never opened)")
        return self._writer

    def _read(self, sql: str, params: tuple[Any, ...] = ()) -> list[Any]:
        if self._reader is None:
            raise OutboxError(f"outbox {self.path!r} is closed (or was never opened)")
        try:
            return self._reader.execute(sql, params).fetchall()
        except sqlite3.Error as exc:
            raise OutboxError(f"outbox database {self.path!r}: {exc}") from exc

    # -- transactions -------------------------------------------------------------------

    @asynccontextmanager
    async def transaction(self, context: Context) -> AsyncIterator[SQLiteTransaction]:
        async with self._writing:
            tx = SQLiteTransaction(self, context)
            try:
                # inside the try: a cancelled BEGIN still runs on the thread, so roll it back
                await self._run(lambda db: db.execute("BEGIN IMMEDIATE"))
                yield tx
                await self._run(lambda db: self._commit(db, tx._rows))
            except BaseException:
                await self._run(_rollback)
                raise
            finally:
                tx._open = False
        if tx._rows:
            self._announce()

    def _commit(self, db: sqlite3.Connection, rows: list[OutboxRow]) -> None:
        if rows:
            db.executemany(
                f"INSERT INTO {self.prefix}outbox ({_ROW_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (
                        r.id,
                        r.aggregatetype,
                        r.aggregateid,
                        r.type,
                        r.payload,
                        r.headers,
                        r.channel,
                        r.partition,
                    )
                    for r in rows
                ],
            )
        db.execute("COMMIT")

    def _claim_entry(
        self, db: sqlite3.Connection, consumer: str, message_id: str, now: float
    ) -> InboxEntry | None:
        inserted = db.execute(
            f"INSERT INTO {self.prefix}inbox (consumer, message_id, handled_at) VALUES (?, ?, ?) "
            "ON CONFLICT DO NOTHING",
            (consumer, message_id, now),
        ).rowcount
        return None if inserted else self._entry(db, consumer, message_id)

    def _entry(self, db: sqlite3.Connection, consumer: str, message_id: str) -> InboxEntry | None:
        row = db.execute(
            f"SELECT handled_at, reply_type, reply FROM {self.prefix}inbox "
            "WHERE consumer = ? AND message_id = ?",
            (consumer, message_id),
        ).fetchone()
        return None if row is None else InboxEntry(consumer, message_id, *row)

    # -- the relay's side ----------------------------------------------------------------

    @asynccontextmanager
    async def claim(
        self, limit: int, *, buckets: int | None = None
    ) -> AsyncIterator[list[OutboxRow]]:
        async with self._claiming:
            self._take_relay_lock()
            rows = [
                stored_row(row)
                for row in self._read(
                    f"SELECT position, {_ROW_COLUMNS} FROM {self.prefix}outbox "
                    "WHERE published_at IS NULL ORDER BY position LIMIT ?",
                    (limit,),
                )
            ]
            yield rows
            if rows:
                async with self._writing:
                    positions, now = [r.position for r in rows], self.clock.time()
                    await self._run(lambda db: self._settle(db, positions, now))

    def _settle(self, db: sqlite3.Connection, positions: list[int], now: float) -> None:
        p = self.prefix
        db.execute("BEGIN IMMEDIATE")
        try:
            if self.retention is None:
                db.executemany(
                    f"DELETE FROM {p}outbox WHERE position = ?", [(n,) for n in positions]
                )
            else:
                db.executemany(
                    f"UPDATE {p}outbox SET published_at = ? WHERE position = ?",
                    [(now, n) for n in positions],
                )
                db.execute(f"DELETE FROM {p}outbox WHERE published_at < ?", (now - self.retention,))
            db.execute("COMMIT")
        except BaseException:
            _rollback(db)
            raise

    def _take_relay_lock(self) -> None:
        """Become this file's one relay, or fail if another process or object is."""
        if self._relay_lock is not None:
            return
        import fcntl

        lock = open(f"{self.path}-relay.lock", "wb")  # noqa: SIM115 - held until close()
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            lock.close()
            raise OutboxError(
                f"another relay already publishes the outbox of {self.path!r} (it holds "
                f"{self.path}-relay.lock); SQLite has one relay per file: stop the other one"
            ) from None
        self._relay_lock = lock

    async def pending(self) -> int:
        sql = f"SELECT count(*) FROM {self.prefix}outbox WHERE published_at IS NULL"
        return int(self._read(sql)[0][0])

    async def inbox_entry(self, consumer: str, message_id: str) -> InboxEntry | None:
        rows = self._read(
            f"SELECT handled_at, reply_type, reply FROM {self.prefix}inbox "
            "WHERE consumer = ? AND message_id = ?",
            (consumer, message_id),
        )
        return InboxEntry(consumer, message_id, *rows[0]) if rows else None

    async def expire_inbox(self, before: float) -> int:
        sql = f"DELETE FROM {self.prefix}inbox WHERE handled_at < ?"
        async with self._writing:
            return await self._run(lambda db: db.execute(sql, (before,)).rowcount)

    async def close(self) -> None:
        if self._closed:
            return
        async with self._writing:
            if self._writer is not None:
                await self._run(lambda db: db.close())
                self._writer = None
            self._closed = True
        if self._reader is not None:
            self._reader.close()
            self._reader = None
        if self._relay_lock is not None:
            self._relay_lock.close()  # releases the flock
            self._relay_lock = None
        self._thread.shutdown(wait=True)


def _rollback(db: sqlite3.Connection | None) -> None:
    if db is not None and db.in_transaction:
        db.execute("ROLLBACK")
