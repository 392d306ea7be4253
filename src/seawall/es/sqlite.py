"""The SQLite event store: the embedded default, on the standard library's sqlite3.

One file in WAL mode. All writes go through one writer thread with its own
connection, so there is a single writer and global positions (SQLite rowids)
are handed out in commit order: a reader can never see position 7 before 6,
and a rolled-back append leaves no hole. Appends from many tasks that arrive
while the writer is busy are committed together in one transaction (group
commit); each keeps its own expected-version check, so one conflict fails
only its own append. Reads are short indexed queries and run on the event
loop's thread with a second connection (WAL lets it read while the writer
writes), which costs less than a hop to a thread and back.

``sync`` is the fsync policy of :mod:`seawall._fsync`: ``"always"`` (the
default) and ``"batch"`` fsync every commit before its appends return (a group
commit shares one fsync either way); ``"none"`` fsyncs only at WAL checkpoints,
so a power loss (not a process crash) may lose the last commits. The older
spellings ``"full"`` and ``"normal"`` still mean ``"always"`` and ``"none"``.
"""

from __future__ import annotations

import asyncio
import re
import sqlite3
from asyncio import FIRST_COMPLETED
from collections.abc import AsyncGenerator, Sequence
from concurrent.futures import ThreadPoolExecutor
from itertools import groupby
from pathlib import Path
from typing import Any, Literal

from .._clock import Clock, SystemClock
from .._exceptions import ConcurrencyError, ConfigurationError, EventStoreError, StaleEpoch
from .._fsync import SyncPolicy, parse_sync
from .._transport.ownership import Fence
from ._follow import AppendSignal, follow
from ._records import NewEvent, ProjectionWrite, RecordedEvent, SnapshotRecord

__all__ = ["SQLiteEventStore"]

_PREFIX = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$|^$")
_COLUMNS = "position, stream, version, id, type, type_version, time, data"


def _schema(p: str) -> str:
    return f"""
    CREATE TABLE IF NOT EXISTS {p}events (
        position INTEGER PRIMARY KEY,
        stream TEXT NOT NULL,
        version INTEGER NOT NULL,
        id TEXT NOT NULL,
        type TEXT NOT NULL,
        type_version TEXT NOT NULL,
        time REAL NOT NULL,
        data BLOB NOT NULL,
        UNIQUE (stream, version)
    );
    CREATE TABLE IF NOT EXISTS {p}snapshots (
        stream TEXT PRIMARY KEY,
        version INTEGER NOT NULL,
        type TEXT NOT NULL,
        type_version TEXT NOT NULL,
        data BLOB NOT NULL
    );
    CREATE TABLE IF NOT EXISTS {p}checkpoints (
        name TEXT PRIMARY KEY,
        position INTEGER NOT NULL
    );
    CREATE TABLE IF NOT EXISTS {p}fences (
        scope TEXT PRIMARY KEY,
        epoch INTEGER NOT NULL
    );
    """


class _Append:
    __slots__ = ("events", "expected", "fence", "future", "stream", "time")

    def __init__(
        self,
        stream: str,
        events: Sequence[NewEvent],
        expected: int,
        time: float,
        fence: Fence | None,
    ) -> None:
        self.stream = stream
        self.events = events
        self.expected = expected
        self.time = time
        self.fence = fence
        self.future: asyncio.Future[int] = asyncio.get_running_loop().create_future()


class SQLiteEventStore:
    """An event store in one SQLite file; open it with :meth:`open`."""

    def __init__(
        self,
        path: str | Path,
        *,
        prefix: str = "",
        sync: SyncPolicy | Literal["full", "normal"] = "always",
        clock: Clock | None = None,
        poll: float = 0.2,
    ) -> None:
        if not _PREFIX.match(prefix):
            raise ConfigurationError(
                f"table prefix {prefix!r} must be letters, digits and '_' (not first a digit)"
            )
        self.sync = parse_sync(sync, where=f"SQLiteEventStore({str(path)!r})", old_spellings=True)
        self.path = str(path)
        self.prefix = prefix
        self._clock = clock or SystemClock()
        self._poll = poll
        self._signal = AppendSignal()
        self._queue: list[_Append] = []
        self._turn: asyncio.Future[None] | None = None
        """Set while an append leads a group commit; done when it hands over."""
        self._writer_thread = ThreadPoolExecutor(1, thread_name_prefix="seawall-es-sqlite")
        self._writer: sqlite3.Connection | None = None
        self._reader: sqlite3.Connection | None = None
        self._closed = False
        p = prefix
        self._sql_insert = (
            f"INSERT INTO {p}events (stream, version, id, type, type_version, time, data) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)"
        )
        self._sql_version = f"SELECT max(version) FROM {p}events WHERE stream = ?"
        self._sql_stream = (
            f"SELECT {_COLUMNS} FROM {p}events WHERE stream = ? AND version >= ? ORDER BY version"
        )
        self._sql_all = (
            f"SELECT {_COLUMNS} FROM {p}events WHERE position > ? ORDER BY position LIMIT ?"
        )

    @classmethod
    async def open(cls, path: str | Path, **options: Any) -> SQLiteEventStore:
        """Open (creating if needed) the store in the file at ``path``."""
        store = cls(path, **options)
        try:
            await store._run(store._connect_writer)
            store._reader = store._connect()
        except BaseException:
            await store.close()
            raise
        return store

    def _connect(self) -> sqlite3.Connection:
        try:
            conn = sqlite3.connect(self.path, isolation_level=None, timeout=30.0)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute(f"PRAGMA synchronous={'NORMAL' if self.sync == 'none' else 'FULL'}")
        except sqlite3.Error as exc:
            raise EventStoreError(f"cannot open the event store {self.path!r}: {exc}") from exc
        return conn

    def _connect_writer(self) -> None:
        conn = self._connect()
        conn.executescript(_schema(self.prefix))
        self._writer = conn

    async def _run(self, fn: Any, *args: Any) -> Any:
        if self._closed:
            raise EventStoreError(f"event store {self.path!r} is closed")
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._writer_thread, fn, *args)
        except sqlite3.Error as exc:
            raise EventStoreError(f"event store {self.path!r}: {exc}") from exc

    def _read(self, sql: str, params: tuple[Any, ...]) -> list[Any]:
        if self._reader is None:
            raise EventStoreError(f"event store {self.path!r} is closed (or was never opened)")
        try:
            return self._reader.execute(sql, params).fetchall()
        except sqlite3.Error as exc:
            raise EventStoreError(f"event store {self.path!r}: {exc}") from exc

    # -- appends (group commit) -------------------------------------------------

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
        if self._closed:
            raise EventStoreError(f"event store {self.path!r} is closed")
        item = _Append(stream, events, expected_version, self._clock.time(), fence)
        self._queue.append(item)
        while not item.future.done():
            if self._turn is not None and not self._turn.done():
                await asyncio.wait((item.future, self._turn), return_when=FIRST_COMPLETED)
            else:
                await self._lead()
        return item.future.result()

    async def _lead(self) -> None:
        # Group commit: the appender that finds the writer idle commits every append
        # queued so far in one transaction, then hands over; appenders that came
        # meanwhile wait for their result or for the turn to pass to one of them.
        loop = asyncio.get_running_loop()
        turn = self._turn = loop.create_future()
        batch: list[_Append] = []
        cancelled = False
        try:
            await asyncio.sleep(0)  # appends started in the same loop pass join this batch
            batch, self._queue = self._queue, []
            done = loop.run_in_executor(self._writer_thread, self._commit_appends, batch)
            while True:
                try:
                    results = await asyncio.shield(done)
                    break
                except asyncio.CancelledError:
                    if done.cancelled():
                        raise
                    cancelled = True  # finish the batch for everyone in it first
            for item, result in zip(batch, results, strict=True):
                if isinstance(result, Exception):
                    item.future.set_exception(result)
                else:
                    item.future.set_result(result)
        except Exception as exc:  # the database failed: every append of the batch says so
            error = EventStoreError(f"event store {self.path!r}: append failed: {exc}")
            error.__cause__ = exc
            for item in batch:
                if not item.future.done():
                    item.future.set_exception(error)
        except BaseException:
            for item in batch:
                if not item.future.done():
                    item.future.set_exception(EventStoreError("append interrupted"))
            raise
        finally:
            turn.set_result(None)
            self._signal.fire()
        if cancelled:
            raise asyncio.CancelledError

    def _commit_appends(self, batch: list[_Append]) -> list[int | Exception]:
        conn = self._writer
        assert conn is not None
        results: list[int | Exception] = []
        conn.execute("BEGIN IMMEDIATE")
        try:
            for item in batch:
                if item.fence is not None and (stale := self._fenced(conn, item.fence)):
                    results.append(stale)
                    continue
                actual = conn.execute(self._sql_version, (item.stream,)).fetchone()[0] or 0
                if actual != item.expected:
                    results.append(ConcurrencyError(item.stream, item.expected, actual))
                    continue
                start, t, s = item.expected, item.time, item.stream
                conn.executemany(
                    self._sql_insert,
                    [
                        (s, start + i, e.id, e.type, e.type_version, t, e.data)
                        for i, e in enumerate(item.events, 1)
                    ],
                )
                results.append(start + len(item.events))
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        return results

    def _fenced(self, conn: sqlite3.Connection, fence: Fence) -> StaleEpoch | None:
        """In the write's transaction: refuse a fence older than the newest seen for its
        scope, else keep it as the newest (so every later write needs at least it)."""
        p = self.prefix
        row = conn.execute(f"SELECT epoch FROM {p}fences WHERE scope = ?", (fence.scope,))
        found = row.fetchone()
        if found is not None and int(found[0]) > fence.epoch:
            return StaleEpoch(fence.scope, fence.epoch, int(found[0]))
        if found is None or int(found[0]) < fence.epoch:
            conn.execute(
                f"INSERT INTO {p}fences (scope, epoch) VALUES (?, ?) "
                "ON CONFLICT (scope) DO UPDATE SET epoch = excluded.epoch",
                (fence.scope, fence.epoch),
            )
        return None

    # -- reads --------------------------------------------------------------------

    async def read_stream(self, stream: str, from_version: int = 1) -> list[RecordedEvent]:
        return [RecordedEvent(*row) for row in self._read(self._sql_stream, (stream, from_version))]

    async def read_all(self, after: int = 0, limit: int = 1000) -> list[RecordedEvent]:
        return [RecordedEvent(*row) for row in self._read(self._sql_all, (after, limit))]

    async def head(self) -> int:
        row = self._read(f"SELECT max(position) FROM {self.prefix}events", ())
        return int(row[0][0] or 0)

    async def position_at(self, time: float) -> int:
        sql = f"SELECT min(position) FROM {self.prefix}events WHERE time >= ?"
        first = self._read(sql, (time,))[0][0]
        return (await self.head()) if first is None else int(first) - 1

    def subscribe(
        self, after: int = 0, *, batch: int = 1000
    ) -> AsyncGenerator[RecordedEvent, None]:
        return follow(
            self.read_all, self._signal, self._clock, after=after, batch=batch, poll=self._poll
        )

    async def query(self, sql: str, *params: object) -> list[tuple[object, ...]]:
        """Rows of a read-only query on this database (e.g. a projection's read model)."""
        return [tuple(row) for row in self._read(sql, params)]

    # -- snapshots and projection checkpoints ---------------------------------------

    async def save_snapshot(self, snapshot: SnapshotRecord) -> None:
        sql = (
            f"INSERT INTO {self.prefix}snapshots (stream, version, type, type_version, data) "
            "VALUES (?, ?, ?, ?, ?) ON CONFLICT (stream) DO UPDATE SET version = excluded.version,"
            " type = excluded.type, type_version = excluded.type_version, data = excluded.data "
            "WHERE excluded.version > version"
        )
        s = snapshot
        await self._run(self._write, sql, (s.stream, s.version, s.type, s.type_version, s.data))

    def _write(self, sql: str, params: tuple[Any, ...]) -> None:
        assert self._writer is not None
        self._writer.execute(sql, params)

    async def read_from_snapshot(
        self, stream: str
    ) -> tuple[SnapshotRecord | None, list[RecordedEvent]]:
        snapshot = await self.load_snapshot(stream)
        events = await self.read_stream(stream, 1 if snapshot is None else snapshot.version + 1)
        return snapshot, events

    async def load_snapshot(self, stream: str) -> SnapshotRecord | None:
        sql = (
            f"SELECT stream, version, type, type_version, data FROM {self.prefix}snapshots "
            "WHERE stream = ?"
        )
        rows = self._read(sql, (stream,))
        return SnapshotRecord(*rows[0]) if rows else None

    async def checkpoint(self, name: str) -> int:
        rows = self._read(f"SELECT position FROM {self.prefix}checkpoints WHERE name = ?", (name,))
        return int(rows[0][0]) if rows else 0

    async def checkpoints(self) -> dict[str, int]:
        rows = self._read(f"SELECT name, position FROM {self.prefix}checkpoints ORDER BY name", ())
        return {name: int(position) for name, position in rows}

    async def commit_projection(
        self,
        name: str,
        expected: int,
        position: int,
        writes: Sequence[ProjectionWrite],
        *,
        fence: Fence | None = None,
    ) -> None:
        await self._run(self._commit_projection, name, expected, position, writes, fence)

    def _commit_projection(
        self,
        name: str,
        expected: int,
        position: int,
        writes: Sequence[ProjectionWrite],
        fence: Fence | None,
    ) -> None:
        conn = self._writer
        assert conn is not None
        p = self.prefix
        conn.execute("BEGIN IMMEDIATE")
        try:
            if fence is not None and (stale := self._fenced(conn, fence)):
                raise stale
            row = conn.execute(f"SELECT position FROM {p}checkpoints WHERE name = ?", (name,))
            found = row.fetchone()
            actual = 0 if found is None else int(found[0])
            if actual != expected:
                raise ConcurrencyError(f"projection {name}", expected, actual)
            for sql, group in groupby(writes, key=lambda w: w.sql):
                conn.executemany(sql, [w.params for w in group])
            conn.execute(
                f"INSERT INTO {p}checkpoints (name, position) VALUES (?, ?) "
                "ON CONFLICT (name) DO UPDATE SET position = excluded.position",
                (name, position),
            )
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    async def close(self) -> None:
        while self._queue or (self._turn is not None and not self._turn.done()):
            # let every queued append commit before the connections go
            if self._turn is not None and not self._turn.done():
                await self._turn
            else:
                await self._lead()
        if self._reader is not None:
            self._reader.close()
            self._reader = None
        if self._writer is not None:
            await self._run(self._writer.close)
            self._writer = None
        self._closed = True
        self._writer_thread.shutdown(wait=True)

    async def __aenter__(self) -> SQLiteEventStore:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
