"""A durable reply cache in a SQLite file, beside the embedded broker's store.

Implements :class:`seawall.resilience.ReplyStore` for services that ask for
their replies to outlive the process (``Service(..., reply_store=...)``),
without any server: ``SqliteReplyStore("./data/replies.db")`` next to
``embedded://./data``. A file of its own rather than a table in the broker's
``store.db``, which only the broker's writer thread writes. The database calls
run in a worker thread; rows older than ``keep`` seconds are deleted as new
ones come, so the file stays bounded.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from pathlib import Path

from .._exceptions import ConfigurationError

__all__ = ["SqliteReplyStore"]

_PURGE_EVERY = 256
"""Puts between two deletions of expired rows."""


class SqliteReplyStore:
    """Replies by request id in a SQLite file (WAL), each kept ``keep`` seconds."""

    def __init__(self, path: str | Path, *, keep: float = 3600.0) -> None:
        if keep <= 0:
            raise ConfigurationError(f"SqliteReplyStore keep must be positive seconds, got {keep}")
        self.path = Path(path)
        self.keep = keep
        self._lock = threading.Lock()
        self._db: sqlite3.Connection | None = None
        self._puts = 0

    def _open(self) -> sqlite3.Connection:
        if self._db is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute(
                "CREATE TABLE IF NOT EXISTS replies "
                "(request_id TEXT PRIMARY KEY, at REAL NOT NULL, reply BLOB NOT NULL)"
            )
            db.execute("CREATE INDEX IF NOT EXISTS replies_at ON replies (at)")
            self._db = db
        return self._db

    def _get(self, request_id: str) -> bytes | None:
        with self._lock:
            row = (
                self._open()
                .execute("SELECT reply FROM replies WHERE request_id = ?", (request_id,))
                .fetchone()
            )
        return None if row is None else bytes(row[0])

    def _put(self, request_id: str, reply: bytes, now: float) -> None:
        with self._lock:
            db = self._open()
            db.execute(
                "INSERT OR REPLACE INTO replies (request_id, at, reply) VALUES (?, ?, ?)",
                (request_id, now, reply),
            )
            self._puts += 1
            if self._puts % _PURGE_EVERY == 0:
                db.execute("DELETE FROM replies WHERE at < ?", (now - self.keep,))

    async def get(self, request_id: str) -> bytes | None:
        return await asyncio.to_thread(self._get, request_id)

    async def put(self, request_id: str, reply: bytes, *, now: float) -> None:
        await asyncio.to_thread(self._put, request_id, reply, now)

    def purge(self, now: float) -> int:
        """Delete the rows older than ``keep`` seconds at ``now``; how many went."""
        with self._lock:
            return (
                self._open()
                .execute("DELETE FROM replies WHERE at < ?", (now - self.keep,))
                .rowcount
            )

    async def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None
