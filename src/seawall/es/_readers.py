"""Reader connections of the PostgreSQL event store: a few sessions kept for reads.

A read through asyncpg's pool pays for the pool on every call (a task per
release, queue and timer work on acquire); a load is one short statement, so
that overhead is most of the client's work. :class:`Readers` keeps up to
``limit`` connections of its own, opened on first use and kept with their
prepared-statement cache. When all are busy a read goes through the pool.

A statement that fails with a SQL error leaves its session usable: the
connection is kept. A read cancelled or lost mid-statement leaves the session in
doubt: the connection is dropped, never reused.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

__all__ = ["Readers"]


class Readers:
    """Up to ``limit`` reader connections made by ``connect``; the rest of reads go to
    ``pool``."""

    def __init__(self, pool: Any, connect: Callable[[], Awaitable[Any]] | None, limit: int) -> None:
        self._pool = pool
        self._connect = connect
        self._limit = limit
        self._idle: list[Any] = []  # open reader connections not in use
        self._opened = 0  # reader connections open or opening
        self._closed = False

    async def fetch(self, sql: str, *args: Any) -> list[Any]:
        """Rows of one statement, on an idle reader connection (the pool if none)."""
        import asyncpg

        if self._idle:
            conn = self._idle.pop()
        elif self._opened < self._limit and self._connect is not None:
            self._opened += 1
            try:
                conn = await self._connect()
            except BaseException:
                self._opened -= 1
                raise
        else:
            return await self._pool.fetch(sql, *args)  # type: ignore[no-any-return]
        try:
            rows: list[Any] = await conn.fetch(sql, *args)
        except asyncpg.PostgresError:
            self._give_back(conn)  # the statement failed, the session is fine
            raise
        except BaseException:
            self._drop(conn)  # lost, or cancelled mid-statement: a session in doubt
            raise
        self._give_back(conn)
        return rows

    def _give_back(self, conn: Any) -> None:
        if self._closed or conn.is_closed():
            self._drop(conn)
        else:
            self._idle.append(conn)

    def _drop(self, conn: Any) -> None:
        self._opened -= 1
        conn.terminate()

    async def close(self) -> None:
        """Close the idle connections; one in use is dropped when its read ends."""
        self._closed = True
        idle, self._idle = self._idle, []
        for conn in idle:
            self._opened -= 1
            try:
                await conn.close(timeout=5)
            except Exception:  # lost already: nothing to say goodbye to
                conn.terminate()
