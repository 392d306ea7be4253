"""The embedded broker's durable log store: one SQLite file in WAL mode.

This module is synchronous and knows nothing of asyncio, consumer groups or
messages: it stores what the broker (``_broker``) decides, and hands it all
back after a restart. :mod:`seawall._broker.store_writer` wraps it in a writer thread
with group commit.

What it holds, in one SQLite database ``store.db`` inside a data directory:

* **logs** — an append-only log per ``(channel, partition)``; entries have
  dense offsets from 0, assigned by the caller and checked here, an append
  time and an opaque body. All entries share one table keyed by a single
  integer ``log_id << 40 | offset``: appends land at the right edge of one
  b-tree (SQLite's fastest insert) and a log's range is one key interval.
  Per log, ``base``, ``end`` and total body ``bytes`` are kept in a small
  table, updated in the same transaction, so recovery reads O(logs) rows.
* **channels** — each channel's :class:`ChannelLayout` (msgspec JSON).
* **positions** — ``(channel, group, partition) -> committed offset``. A
  group that expires once idle keeps its expiry (milliseconds) here too, as
  the position of partition :data:`~seawall._broker.idle.EXPIRY_PART`, past
  every real partition, so a seawall that predates it ignores that row.
* **scheduled** — messages to append to a log once due; moving one is an
  unschedule plus an append in one transaction: a crash neither loses nor
  duplicates it.
* **ids** — the broker's duplicate window: ``(channel, key, time)`` of recent
  publishes, written in the transaction of their append (or schedule), so a
  restarted broker still knows what it stored. One row per commit (its latest
  time and its ids as one msgpack array: one insert per group, not per publish,
  which measured a third of an append's cost), numbered in write order and
  forgotten from the oldest (:meth:`WriteBatch.forget_ids`). Deleting a channel
  writes a mark (its name and an empty key) that makes recovery drop the
  channel's earlier ids. Added after schema version 1 was released: created on
  open when missing, and ignored by a seawall that predates it.

Deleting a channel removes its layout, logs, entries, positions and scheduled
messages in one transaction; deleting a group removes its positions.

Every :meth:`Store.write` is one transaction. Durability comes from SQLite's
WAL: a commit appends checksummed frames to ``store.db-wal``; with
``synchronous=FULL`` the WAL is fsynced before the commit returns. On open,
SQLite replays the WAL up to the last complete, valid commit frame, so a torn
last write (a crash mid-commit) is ignored and everything committed before it
is kept. A damaged database file raises :class:`StorageCorrupted`, never a
raw ``sqlite3`` error and never a silent loss.

Checkpoints are explicit (``wal_autocheckpoint=0``): the writer calls
:meth:`Store.checkpoint_if_due` after it has acknowledged a commit, so copying
the WAL back into the database never delays an acknowledgement. Opening the
store writes the WAL file out to :data:`WAL_RESERVE` bytes, so that commits
overwrite it instead of growing it, which halves the cost of their fsync.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sqlite3
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from itertools import chain
from pathlib import Path
from typing import Literal, NamedTuple, Self

import msgspec

from .._exceptions import StorageCorrupted, StorageError
from .._fsync import SyncPolicy

__all__ = [
    "ChannelLayout",
    "Entry",
    "Ledger",
    "LogBounds",
    "Recovered",
    "Scheduled",
    "SeenId",
    "Store",
    "StoreReader",
    "SyncPolicy",
    "WriteBatch",
]

DB_FILE = "store.db"
LOCK_FILE = "store.lock"
SCHEMA_VERSION = 1
OFFSET_BITS = 40
"""Offsets up to 2**40 (10**12) per log; log ids use the key's remaining bits."""
MAX_OFFSET = 1 << OFFSET_BITS
PAGE_SIZE = 4096
"""The file system's page size: a database page is written with one page write."""
CHECKPOINT_BYTES = 16 << 20
"""Checkpoint after about this much WAL: long enough to amortize the database
fsync a checkpoint costs, short enough that recovery replays little."""
WAL_SIZE_LIMIT = 64 << 20
"""A WAL file left bigger than this after a checkpoint is truncated back."""
WAL_RESERVE = CHECKPOINT_BYTES + (2 << 20)
"""Bytes of WAL file written with zeros when the store opens, a checkpoint's worth.

A commit's fsync costs twice as much when it grows the file (ext4: the new
size and blocks go through the file system's journal) as when it overwrites
blocks already on disk: fdatasync of 8 KiB measured 220-290 us appended, 90-160
us overwritten in place, and a lone one-entry commit 260-300 us against
125-150 us. SQLite writes the WAL from its start again after each completed
checkpoint, so with the file this long from the start nearly every commit
overwrites. SQLite ignores the zeros: WAL recovery stops at the first frame
whose salt does not match the WAL header's."""
FRAME_BYTES = PAGE_SIZE + 24
"""A WAL frame: a page and its header."""

SCHEMA = """
CREATE TABLE IF NOT EXISTS channels (name TEXT PRIMARY KEY, layout BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS logs (
    id INTEGER PRIMARY KEY, channel TEXT NOT NULL, part INTEGER NOT NULL,
    base INTEGER NOT NULL, "end" INTEGER NOT NULL, bytes INTEGER NOT NULL,
    UNIQUE (channel, part));
CREATE TABLE IF NOT EXISTS entries (k INTEGER PRIMARY KEY, time REAL NOT NULL, body BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS positions (
    channel TEXT NOT NULL, grp TEXT NOT NULL, part INTEGER NOT NULL, committed INTEGER NOT NULL,
    PRIMARY KEY (channel, grp, part)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS scheduled (
    id TEXT PRIMARY KEY, channel TEXT NOT NULL, due REAL NOT NULL, body BLOB NOT NULL);
"""

IDS_SCHEMA = """
CREATE TABLE IF NOT EXISTS ids (n INTEGER PRIMARY KEY, time REAL NOT NULL, keys BLOB NOT NULL);
"""

LogKey = tuple[str, int]
"""(channel, partition)"""
PositionKey = tuple[str, str, int]
"""(channel, group, partition)"""


class ChannelLayout(msgspec.Struct, frozen=True, kw_only=True):
    """How a channel is laid out and retained; stored so a restarted broker knows it."""

    partitions: int
    max_messages: int
    priorities: int = 1
    max_age: float | None = None
    """Seconds an entry is kept, or None for no age limit."""
    max_bytes: int | None = None
    """Body bytes kept per log, or None for no size limit."""
    sync_requests: bool = True
    """See :attr:`seawall.ChannelSpec.sync_requests`."""
    requests: Literal["stored", "direct"] = "stored"
    """See :attr:`seawall.ChannelSpec.requests`."""


class Entry(NamedTuple):
    """One log entry as read back."""

    offset: int
    time: float
    body: bytes


class SeenId(NamedTuple):
    """A publish in the duplicate window: its channel, dedupe key and store time."""

    channel: str
    key: str
    time: float


class Scheduled(NamedTuple):
    """A message waiting to be appended to ``channel`` once ``due``."""

    id: str
    channel: str
    due: float
    body: bytes


@dataclass(frozen=True, slots=True)
class LogBounds:
    """A log's first kept offset, the offset of its next append, and its body bytes."""

    base: int
    end: int
    bytes: int


@dataclass(frozen=True)
class Recovered:
    """Everything the broker needs to restart, read in a few queries."""

    channels: dict[str, ChannelLayout]
    logs: dict[LogKey, LogBounds]
    positions: dict[PositionKey, int]
    scheduled: list[Scheduled]
    ids: list[SeenId] = field(default_factory=list)
    """The duplicate window's ids, oldest first (read only when asked for)."""


@dataclass
class WriteBatch:
    """Operations to write in one transaction, collected in call order per kind.

    Appends are kept per log as runs of ``(offset, time, body)``; an append
    whose offset does not follow the previous one of its log in this batch is
    refused at once. Positions and trims coalesce: the latest position and the
    highest trim per key win. Deletions are written first: deleting a channel
    (or a group) drops what the batch holds for it so far, so what is added
    after it, such as the channel declared anew, is written after it.
    """

    declares: dict[str, ChannelLayout] = field(default_factory=dict)
    runs: dict[LogKey, list[tuple[int, float, bytes]]] = field(default_factory=dict)
    positions: dict[PositionKey, int] = field(default_factory=dict)
    trims: dict[LogKey, int] = field(default_factory=dict)
    schedules: list[Scheduled] = field(default_factory=list)
    unschedules: list[tuple[str, str]] = field(default_factory=list)
    """(id, channel) of scheduled messages moved to their logs."""
    ids: list[SeenId] = field(default_factory=list)
    """Dedupe keys of this batch's publishes, for the duplicate window."""
    forget_before: float | None = None
    """Forget the window's ids older than this (lazy, like trims; the highest wins)."""
    deleted: set[str] = field(default_factory=set)
    """Channels to delete."""
    forgotten: set[tuple[str, str]] = field(default_factory=set)
    """(channel, group) of groups to delete."""
    records: int = 0
    """Operations that carry data (everything but positions and trims)."""
    unsynced: int = 0
    """Of ``records``, appends that need no fsync: when all are, the commit skips it."""

    @property
    def fsync(self) -> bool:
        """Whether the commit must be fsynced (under a policy that fsyncs): unless every
        record of the batch asked for none."""
        return not self.records or self.unsynced < self.records

    def declare(self, name: str, layout: ChannelLayout) -> None:
        self.declares[name] = layout
        self.records += 1

    def append(
        self,
        channel: str,
        partition: int,
        offset: int,
        time: float,
        body: bytes,
        dedupe: str | None = None,
    ) -> None:
        """Append an entry; ``dedupe``: its key in the duplicate window, kept with it."""
        run = self.runs.get((channel, partition))
        if run is None:
            run = self.runs[(channel, partition)] = []
        elif run[-1][0] + 1 != offset:
            raise StorageError(
                f"append to {channel}[{partition}] at offset {offset} does not follow "
                f"offset {run[-1][0]} of the same batch; offsets must be dense"
            )
        run.append((offset, time, body))
        self.records += 1
        if dedupe is not None:
            self.ids.append(SeenId(channel, dedupe, time))

    def set_position(self, channel: str, group: str, partition: int, committed: int) -> None:
        self.positions[(channel, group, partition)] = committed

    def forget_ids(self, before: float) -> None:
        """Drop the duplicate window's ids stored before time ``before``."""
        if self.forget_before is None or before > self.forget_before:
            self.forget_before = before

    def trim(self, channel: str, partition: int, below: int) -> None:
        key = (channel, partition)
        self.trims[key] = max(below, self.trims.get(key, below))

    def schedule(self, item: Scheduled) -> None:
        self.schedules.append(item)
        self.records += 1

    def move_due(
        self, id: str, channel: str, partition: int, offset: int, time: float, body: bytes
    ) -> None:
        """Append a due scheduled message to its log and forget it, in the same transaction."""
        self.append(channel, partition, offset, time, body)
        self.unschedules.append((id, channel))

    def delete_channel(self, name: str) -> None:
        """Delete a channel with everything it holds; what this batch has of it is dropped."""
        self.declares.pop(name, None)
        for ops in (self.runs, self.trims):
            for key in [key for key in ops if key[0] == name]:
                del ops[key]
        self._drop_positions(lambda key: key[0] == name)
        self.schedules = [item for item in self.schedules if item.channel != name]
        self.unschedules = [item for item in self.unschedules if item[1] != name]
        self.ids = [item for item in self.ids if item.channel != name]
        self.ids.append(SeenId(name, "", 0.0))  # recovery forgets the channel's ids here
        self.forgotten = {item for item in self.forgotten if item[0] != name}
        self.deleted.add(name)
        self.records += 1

    def delete_group(self, channel: str, group: str) -> None:
        """Delete a group's positions; those this batch has of it are dropped."""
        self._drop_positions(lambda key: key[:2] == (channel, group))
        self.forgotten.add((channel, group))
        self.records += 1

    def _drop_positions(self, doomed: Callable[[PositionKey], bool]) -> None:
        for key in [key for key in self.positions if doomed(key)]:
            del self.positions[key]

    def __bool__(self) -> bool:
        return bool(self.records or self.positions or self.trims or self.forget_before is not None)


class Ledger:
    """What a valid write must agree with: known channels, log ends, scheduled ids.

    Each method checks one operation and, only if it is valid, applies it.
    The store keeps one to refuse bad batches before touching the disk; the
    writer keeps another on the event loop so a bad call fails at its call site.
    """

    def __init__(self, recovered: Recovered) -> None:
        self.channels = set(recovered.channels)
        self.ends = {key: bounds.end for key, bounds in recovered.logs.items()}
        self.scheduled = {item.id: item.channel for item in recovered.scheduled}

    def declare(self, name: str) -> None:
        self.channels.add(name)

    def delete_channel(self, name: str) -> None:
        self.channels.discard(name)
        self.ends = {key: end for key, end in self.ends.items() if key[0] != name}
        self.scheduled = {id: owner for id, owner in self.scheduled.items() if owner != name}

    def append(self, channel: str, partition: int, offset: int, count: int = 1) -> None:
        key = (channel, partition)
        if self.ends.get(key) != offset or offset + count > MAX_OFFSET:
            self._check_append(channel, partition, offset, count)
        self.ends[key] = offset + count

    def _check_append(self, channel: str, partition: int, offset: int, count: int) -> None:
        end = self._end(channel, partition)
        if offset != end:
            raise StorageError(
                f"append to {channel}[{partition}] at offset {offset}, but the log ends at "
                f"{end}; offsets are dense: the next append must use offset {end}"
            )
        if offset + count > MAX_OFFSET:
            raise StorageError(f"log {channel}[{partition}] is full at offset {MAX_OFFSET}")

    def trim(self, channel: str, partition: int, below: int) -> None:
        end = self._end(channel, partition)
        if below > end:
            raise StorageError(
                f"cannot trim {channel}[{partition}] below offset {below}: the log ends at {end}"
            )

    def position(self, channel: str) -> None:
        self._known(channel)

    def schedule(self, id: str, channel: str) -> None:
        self._known(channel)
        if id in self.scheduled:
            raise StorageError(f"scheduled message {id} already exists; ids must be unique")
        self.scheduled[id] = channel

    def move_due(self, id: str, channel: str, partition: int, offset: int) -> None:
        owner = self._owner(id)
        if owner != channel:
            raise StorageError(f"scheduled message {id} belongs to {owner}, not {channel}")
        self.append(channel, partition, offset)
        del self.scheduled[id]

    def _owner(self, id: str) -> str:
        owner = self.scheduled.get(id)
        if owner is None:
            raise StorageError(f"no scheduled message {id}: it was never scheduled or has moved")
        return owner

    def _known(self, channel: str) -> None:
        if channel not in self.channels:
            raise StorageError(f"unknown channel {channel!r}: declare it before writing to it")

    def _end(self, channel: str, partition: int) -> int:
        self._known(channel)
        return self.ends.get((channel, partition), 0)

    def check(self, batch: WriteBatch) -> None:
        """Check and apply a whole batch, in the order :meth:`Store.write` writes it."""
        for name in batch.deleted:
            self.delete_channel(name)
        for name in batch.declares:
            self.declare(name)
        for item in batch.schedules:
            self.schedule(item.id, item.channel)
        for id, _ in batch.unschedules:
            self._owner(id)
            del self.scheduled[id]
        for (channel, partition), run in batch.runs.items():
            self.append(channel, partition, run[0][0], len(run))
        for (channel, partition), below in batch.trims.items():
            self.trim(channel, partition, below)
        for channel, _, _ in batch.positions:
            self.position(channel)


@contextlib.contextmanager
def map_exceptions(path: Path, doing: str) -> Iterator[None]:
    """Turn sqlite3 errors into seawall's: corruption names the file and what to do."""
    try:
        yield
    except sqlite3.DatabaseError as exc:
        name = getattr(exc, "sqlite_errorname", "")
        if name.startswith(("SQLITE_CORRUPT", "SQLITE_NOTADB")):
            raise corrupted(path, f"{exc} while {doing}") from exc
        raise StorageError(f"store {path} failed while {doing}: {exc}") from exc


def corrupted(path: Path, detail: str) -> StorageCorrupted:
    return StorageCorrupted(
        str(path),
        f"data file {path} is damaged ({detail}); nothing was changed. Restore the data "
        f"directory from a backup, or move {path.parent} away to start empty",
    )


def connect(path: Path, *, cache_kib: int, readonly: bool = False) -> sqlite3.Connection:
    """A connection in autocommit mode (we issue BEGIN/COMMIT) with our pragmas."""
    db = sqlite3.connect(path, isolation_level=None, cached_statements=256)
    db.execute(f"PRAGMA page_size={PAGE_SIZE}")  # only takes on a new, empty file
    # Always WAL: readers never block the writer, and one fsync of the WAL per commit.
    db.execute("PRAGMA journal_mode=WAL")
    db.execute(f"PRAGMA cache_size=-{cache_kib}")
    if readonly:
        db.execute("PRAGMA query_only=ON")
    return db


class StoreReader:
    """Reads of committed data, on any connection to the store (one per thread)."""

    def __init__(self, db: sqlite3.Connection, path: Path) -> None:
        self._db = db
        self.path = path

    def read(self, channel: str, partition: int, start: int, limit: int) -> list[Entry]:
        """Up to ``limit`` entries of a log from offset ``start`` (fewer at its end)."""
        with map_exceptions(self.path, f"reading {channel}[{partition}]"):
            key = self._key(channel, partition)
            if key is None:
                return []
            rows = self._db.execute(
                "SELECT k, time, body FROM entries WHERE k >= ? AND k < ? ORDER BY k LIMIT ?",
                (key + start, key + MAX_OFFSET, limit),
            ).fetchall()
        return [Entry(k - key, time, body) for k, time, body in rows]

    def offset_at_time(self, channel: str, partition: int, t: float) -> int:
        """The first kept offset with an append time >= ``t``, or the log's end.

        A binary search: it assumes append times do not decrease along a log,
        which holds while the broker's clock does not step back.
        """
        doing = f"searching {channel}[{partition}] by time"
        with map_exceptions(self.path, doing), self._snapshot():
            key, bounds = self._bounds(channel, partition)
            lo, hi = bounds.base, bounds.end
            while lo < hi:
                mid = (lo + hi) // 2
                row = self._db.execute("SELECT time FROM entries WHERE k = ?", (key + mid,))
                if row.fetchone()[0] < t:
                    lo = mid + 1
                else:
                    hi = mid
        return lo

    def offset_keeping_bytes(self, channel: str, partition: int, max_bytes: int) -> int:
        """The smallest offset such that the entries from it to the end total <= ``max_bytes``."""
        with map_exceptions(self.path, f"sizing {channel}[{partition}]"), self._snapshot():
            key, bounds = self._bounds(channel, partition)
            excess = bounds.bytes - max_bytes
            offset = bounds.base
            rows = self._db.execute(
                "SELECT length(body) FROM entries WHERE k >= ? AND k < ? ORDER BY k",
                (key + bounds.base, key + bounds.end),
            )
            for (size,) in rows:
                if excess <= 0:
                    break
                excess -= size
                offset += 1
        return offset

    def close(self) -> None:
        self._db.close()

    def _key(self, channel: str, partition: int) -> int | None:
        row = self._db.execute(
            "SELECT id FROM logs WHERE channel = ? AND part = ?", (channel, partition)
        ).fetchone()
        return None if row is None else row[0] << OFFSET_BITS

    def _bounds(self, channel: str, partition: int) -> tuple[int, LogBounds]:
        row = self._db.execute(
            'SELECT id, base, "end", bytes FROM logs WHERE channel = ? AND part = ?',
            (channel, partition),
        ).fetchone()
        if row is None:
            return 0, LogBounds(0, 0, 0)
        return row[0] << OFFSET_BITS, LogBounds(*row[1:])

    @contextlib.contextmanager
    def _snapshot(self) -> Iterator[None]:
        """Several reads that see one committed state."""
        self._db.execute("BEGIN")
        try:
            yield
        finally:
            self._db.execute("COMMIT")


class Store:
    """The synchronous store: one writing connection, owned by one thread."""

    def __init__(self, db: sqlite3.Connection, path: Path, lock: int, policy: SyncPolicy) -> None:
        self._db = db
        self.path = path
        self._lock = lock
        self.policy = policy
        self._fsync = True
        """Whether commits are fsynced now (``synchronous=FULL``), policy none aside."""
        self.reader = StoreReader(db, path)
        self._ids: dict[LogKey, int] = {}
        self._bounds: dict[LogKey, LogBounds] = {}
        self._ledger = Ledger(Recovered({}, {}, {}, []))
        self._wal_bytes = 0

    @classmethod
    def open(cls, path: Path, *, policy: SyncPolicy = "batch", check: bool = True) -> Self:
        """Open (creating) the store in directory ``path``; ``check`` runs ``quick_check``."""
        path.mkdir(parents=True, exist_ok=True)
        lock = _lock_directory(path)
        file = path / DB_FILE
        db: sqlite3.Connection | None = None
        try:
            with map_exceptions(file, "opening"):
                db = connect(file, cache_kib=16 << 10)
                store = cls(db, file, lock, policy)
                store._prepare(check)
        except BaseException:
            if db is not None:
                db.close()
            os.close(lock)
            raise
        return store

    def _prepare(self, check: bool) -> None:
        # FULL: the WAL is fsynced at every commit. NORMAL (policy "none"): fsynced only
        # before a checkpoint, so a power loss may drop recent commits but never
        # leaves a damaged file, as synchronous=OFF could.
        sync = "NORMAL" if self.policy == "none" else "FULL"
        self._db.execute(f"PRAGMA synchronous={sync}")
        self._db.execute("PRAGMA wal_autocheckpoint=0")  # see checkpoint_if_due
        self._db.execute(f"PRAGMA journal_size_limit={WAL_SIZE_LIMIT}")
        version = self._db.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise StorageError(
                f"store {self.path} has schema version {version}, newer than this seawall "
                f"reads ({SCHEMA_VERSION}); upgrade seawall to open it"
            )
        if check:
            self._quick_check()
        if version == 0:
            self._db.executescript(f"BEGIN; {SCHEMA} PRAGMA user_version={SCHEMA_VERSION}; COMMIT;")
        self._db.executescript(f"BEGIN; {IDS_SCHEMA} COMMIT;")  # a store of before the window
        self._load()
        if self.policy != "none":  # only fsynced commits gain from it
            self._reserve_wal()

    def _reserve_wal(self) -> None:
        """Extend the WAL file with zeros to WAL_RESERVE bytes (see there), on disk.

        Only past its end, where SQLite has written nothing: its frames are untouched.
        """
        with map_exceptions(self.path, "reserving WAL space"):
            try:
                fd = os.open(f"{self.path}-wal", os.O_WRONLY)
            except FileNotFoundError:  # SQLite creates it with the first transaction
                return
            try:
                end = os.fstat(fd).st_size
                zeros = bytes(1 << 20)
                while end < WAL_RESERVE:
                    end += os.pwrite(fd, zeros[: WAL_RESERVE - end], end)
                os.fdatasync(fd)
            finally:
                os.close(fd)

    def _quick_check(self) -> None:
        problems = [row[0] for row in self._db.execute("PRAGMA quick_check(5)")]
        if problems != ["ok"]:
            raise corrupted(self.path, "quick_check: " + "; ".join(problems))

    def _load(self) -> None:
        """(Re)read the log table and the ledger from disk."""
        recovered = self.recover()
        self._ledger = Ledger(recovered)
        self._bounds = dict(recovered.logs)
        rows = self._db.execute("SELECT channel, part, id FROM logs")
        self._ids = {(channel, part): id for channel, part, id in rows}

    def recover(self, *, ids: bool = False) -> Recovered:
        """Channels, log bounds, group positions and scheduled messages, as committed;
        with ``ids``, the duplicate window's ids too."""
        with map_exceptions(self.path, "recovering"):
            db = self._db
            channels = {
                name: _decode_layout(self.path, name, layout)
                for name, layout in db.execute("SELECT name, layout FROM channels")
            }
            logs = {
                (channel, part): LogBounds(base, end, size)
                for channel, part, base, end, size in db.execute(
                    'SELECT channel, part, base, "end", bytes FROM logs'
                )
            }
            positions = {
                (channel, grp, part): committed
                for channel, grp, part, committed in db.execute("SELECT * FROM positions")
            }
            rows = db.execute("SELECT id, channel, due, body FROM scheduled ORDER BY due")
            scheduled = [Scheduled(*row) for row in rows]
            seen = self._recover_ids() if ids else []
        return Recovered(channels, logs, positions, scheduled, seen)

    def write(self, batch: WriteBatch) -> None:
        """Write ``batch`` in one transaction; committed (and fsynced, per policy) on return.

        A bad batch (unknown channel, offset gap, …) raises :class:`StorageError`
        and writes nothing.
        """
        if not batch:
            return
        try:
            self._ledger.check(batch)
            with map_exceptions(self.path, "writing"):
                if self.policy != "none" and batch.fsync != self._fsync:
                    # NORMAL in WAL mode: committed without fsync, synced by the next
                    # FULL commit or checkpoint; a process crash loses nothing of it
                    self._fsync = batch.fsync
                    self._db.execute(f"PRAGMA synchronous={'FULL' if self._fsync else 'NORMAL'}")
                self._db.execute("BEGIN IMMEDIATE")
                self._write(batch)
                self._db.execute("COMMIT")
        except BaseException:
            with map_exceptions(self.path, "rolling back"):
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                self._load()
            raise

    def _write(self, batch: WriteBatch) -> None:
        db = self._db
        for name in batch.deleted:
            self._delete_channel(name)
        db.executemany(
            "DELETE FROM positions WHERE channel = ? AND grp = ?", sorted(batch.forgotten)
        )
        db.executemany(
            "INSERT OR REPLACE INTO channels VALUES (?, ?)",
            [(name, msgspec.json.encode(layout)) for name, layout in batch.declares.items()],
        )
        db.executemany("INSERT INTO scheduled VALUES (?, ?, ?, ?)", batch.schedules)
        db.executemany("DELETE FROM scheduled WHERE id = ?", [(id,) for id, _ in batch.unschedules])
        for key, run in batch.runs.items():
            self._append(key, run)
        for key, below in batch.trims.items():
            self._trim(key, below)
        if batch.ids:
            latest = max(item.time for item in batch.ids)
            keys = msgspec.msgpack.encode(batch.ids)
            db.execute("INSERT INTO ids (time, keys) VALUES (?, ?)", (latest, keys))
            self._wal_bytes += len(keys)
        if batch.forget_before is not None:
            self._forget_ids(batch.forget_before)
        db.executemany(
            "INSERT OR REPLACE INTO positions VALUES (?, ?, ?, ?)",
            [(*key, committed) for key, committed in batch.positions.items()],
        )
        self._wal_bytes += FRAME_BYTES * _pages_touched(batch)

    def _recover_ids(self) -> list[SeenId]:
        """The window's ids, oldest first, without those of channels deleted since."""
        seen: dict[str, list[SeenId]] = {}
        for (keys,) in self._db.execute("SELECT keys FROM ids ORDER BY n"):
            try:
                items = msgspec.msgpack.decode(keys, type=list[SeenId])
            except msgspec.DecodeError as exc:
                raise corrupted(self.path, f"a row of the duplicate window: {exc}") from None
            for item in items:
                if item.key:
                    seen.setdefault(item.channel, []).append(item)
                else:  # the channel was deleted here
                    seen.pop(item.channel, None)
        return sorted(chain.from_iterable(seen.values()), key=lambda item: item.time)

    def _forget_ids(self, before: float) -> None:
        """Delete the window's ids from the oldest up to the first one not older than
        ``before``: rows are numbered in write order, so this reads what it deletes."""
        cursor = self._db.execute(
            "DELETE FROM ids WHERE n < coalesce("
            "(SELECT n FROM ids WHERE time >= ? ORDER BY n LIMIT 1), "
            "(SELECT max(n) + 1 FROM ids), 0)",
            (before,),
        )
        self._wal_bytes += PAGE_SIZE * max(cursor.rowcount, 0) // 8

    def _delete_channel(self, name: str) -> None:
        """Remove a channel's layout, logs and their entries, positions and scheduled ones."""
        db = self._db
        for key in [key for key in self._ids if key[0] == name]:
            log_id = self._ids.pop(key)
            bounds = self._bounds.pop(key, None)
            span = (log_id << OFFSET_BITS, (log_id + 1) << OFFSET_BITS)
            db.execute("DELETE FROM entries WHERE k >= ? AND k < ?", span)
            self._wal_bytes += 0 if bounds is None else bounds.bytes  # freed pages are rewritten
        for table, column in _CHANNEL_ROWS:
            db.execute(f"DELETE FROM {table} WHERE {column} = ?", (name,))

    def _append(self, key: LogKey, run: list[tuple[int, float, bytes]]) -> None:
        log_id = self._ids.get(key)
        if log_id is None:
            log_id = self._create_log(key)
        insert_entries(self._db, log_id << OFFSET_BITS, run)
        size = sum(len(body) for _, _, body in run)
        old = self._bounds.get(key, LogBounds(0, 0, 0))
        self._save_bounds(key, LogBounds(old.base, old.end + len(run), old.bytes + size))
        self._wal_bytes += size + 16 * len(run)  # the pages they fill; see also _pages_touched

    def _create_log(self, key: LogKey) -> int:
        cursor = self._db.execute(
            'INSERT INTO logs (channel, part, base, "end", bytes) VALUES (?, ?, 0, 0, 0)', key
        )
        assert cursor.lastrowid is not None
        self._ids[key] = cursor.lastrowid
        return cursor.lastrowid

    def _trim(self, key: LogKey, below: int) -> None:
        old = self._bounds.get(key)
        if old is None or below <= old.base:
            return
        prefix = self._ids[key] << OFFSET_BITS
        span = (prefix + old.base, prefix + below)
        (size,) = self._db.execute(
            "SELECT coalesce(sum(length(body)), 0) FROM entries WHERE k >= ? AND k < ?", span
        ).fetchone()
        self._db.execute("DELETE FROM entries WHERE k >= ? AND k < ?", span)
        self._save_bounds(key, LogBounds(below, old.end, old.bytes - size))
        self._wal_bytes += size  # freed pages are rewritten too

    def _save_bounds(self, key: LogKey, bounds: LogBounds) -> None:
        self._db.execute(
            'UPDATE logs SET base = ?, "end" = ?, bytes = ? WHERE id = ?',
            (bounds.base, bounds.end, bounds.bytes, self._ids[key]),
        )
        self._bounds[key] = bounds

    def read(self, channel: str, partition: int, start: int, limit: int) -> list[Entry]:
        """Up to ``limit`` committed entries of a log from offset ``start``."""
        return self.reader.read(channel, partition, start, limit)

    def offset_at_time(self, channel: str, partition: int, t: float) -> int:
        """See :meth:`StoreReader.offset_at_time`."""
        return self.reader.offset_at_time(channel, partition, t)

    def offset_keeping_bytes(self, channel: str, partition: int, max_bytes: int) -> int:
        """See :meth:`StoreReader.offset_keeping_bytes`."""
        return self.reader.offset_keeping_bytes(channel, partition, max_bytes)

    def checkpoint_if_due(self, force: bool = False) -> bool:
        """Copy the WAL into the database once about CHECKPOINT_BYTES were written.

        PASSIVE: it never waits for readers; what a reader still needs is
        copied by a later checkpoint. Returns whether one ran.
        """
        if not force and self._wal_bytes < CHECKPOINT_BYTES:
            return False
        with map_exceptions(self.path, "checkpointing"):
            self._db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
        self._wal_bytes = 0
        return True

    def close(self) -> None:
        """Checkpoint and close; the directory's lock is released."""
        if self._lock < 0:
            return
        try:
            with map_exceptions(self.path, "closing"):
                self._db.close()  # the last connection to close checkpoints the WAL
        finally:
            os.close(self._lock)
            self._lock = -1

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


_CHANNEL_ROWS = (
    ("logs", "channel"),
    ("positions", "channel"),
    ("scheduled", "channel"),
    ("channels", "name"),
)
"""(table, column) of the rows naming a channel."""

INSERT_ROWS = 1024
"""Rows per multi-row INSERT (3,073 parameters; SQLite allows 32,766). The sqlite3
module releases the GIL around each statement step: one step per 1,024 rows
lets the writer thread insert while the event loop runs, instead of handing
the GIL back and forth at every row as ``executemany`` does (the writer's
appends measured about 0.45x of the raw limit with executemany, 0.5-0.65x with
this, in ``python -m benchmarks.storage``)."""
INSERT_MANY = "INSERT INTO entries VALUES " + ", ".join(["(?1 + ?, ?, ?)"] * INSERT_ROWS)
INSERT_ONE = "INSERT INTO entries VALUES (?1 + ?2, ?3, ?4)"


def insert_entries(
    db: sqlite3.Connection, prefix: int, run: list[tuple[int, float, bytes]]
) -> None:
    """Insert a run of (offset, time, body) rows under key ``prefix``."""
    whole = len(run) - len(run) % INSERT_ROWS
    for start in range(0, whole, INSERT_ROWS):
        db.execute(INSERT_MANY, (prefix, *chain.from_iterable(run[start : start + INSERT_ROWS])))
    db.executemany(INSERT_ONE, [(prefix, *row) for row in run[whole:]])


def _pages_touched(batch: WriteBatch) -> int:
    """Pages a commit rewrites besides those its bodies fill: the WAL gets them all.

    A one-entry commit writes two frames (an entries leaf and the logs row),
    about 9 KB of WAL for a 300-byte body, so counting bodies alone let the WAL
    grow 30 times past CHECKPOINT_BYTES between checkpoints.
    """
    tables = (
        bool(batch.declares)
        + bool(batch.positions)
        + bool(batch.schedules or batch.unschedules)
        + bool(batch.ids)
        + (batch.forget_before is not None)
    )
    deleted = len(batch.deleted) * 5 + bool(batch.forgotten)
    return len(batch.runs) * 2 + len(batch.trims) * 2 + tables + deleted


def open_reader(path: Path) -> StoreReader:
    """A read-only connection to the store in directory ``path`` (already opened by a Store)."""
    file = path / DB_FILE
    with map_exceptions(file, "opening for reading"):
        # Small cache: reads of recent entries hit the OS page cache anyway.
        return StoreReader(connect(file, cache_kib=2 << 10, readonly=True), file)


def _lock_directory(path: Path) -> int:
    """Hold an exclusive lock on the directory: two brokers on one store would both write."""
    fd = os.open(path / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise StorageError(
            f"data directory {path} is in use by another broker (its {LOCK_FILE} is locked); "
            "stop that broker or choose another directory"
        ) from None
    return fd


def _decode_layout(path: Path, name: str, raw: bytes) -> ChannelLayout:
    try:
        return msgspec.json.decode(raw, type=ChannelLayout)
    except msgspec.DecodeError as exc:
        raise corrupted(path, f"layout of channel {name!r} does not decode: {exc}") from None
