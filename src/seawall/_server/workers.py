"""A bounded pool of worker tasks that handle queued items, started on demand.

The broker server hands each connection's requests to one: a request whose
handling completes without waiting costs no task of its own (the running
worker takes the next one), and one that waits (a full channel, a disk
commit) lets another worker take the next, up to ``limit`` at once. The
queue has a bound the feeder waits on, so a client cannot make it grow
without limit. The tasks belong to whoever supplies ``spawn`` (a TaskGroup's
``create_task``) and end with it.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, Generic, TypeVar

__all__ = ["Workers"]

T = TypeVar("T")


class Workers(Generic[T]):
    """Handles items with ``handle``, at most ``limit`` at once; see the module docstring."""

    def __init__(
        self,
        handle: Callable[[T], Awaitable[None]],
        spawn: Callable[[Coroutine[Any, Any, None]], object],
        *,
        limit: int,
        backlog: int,
    ) -> None:
        self._handle = handle
        self._spawn = spawn
        self.limit = limit
        self.backlog = backlog
        self._items: deque[T] = deque()
        self._workers = 0
        self._idle = 0  # workers not handling an item right now
        self._wake = asyncio.Event()  # an item waits for an idle worker
        self._room = asyncio.Event()  # the queue went below its bound
        self._quiet = asyncio.Event()  # nothing queued, nothing being handled
        self._quiet.set()

    def put(self, item: T) -> None:
        """Queue ``item``; never waits (see :meth:`room`)."""
        self._items.append(item)
        self._quiet.clear()
        if self._idle:
            self._wake.set()
        # Workers spawned this turn count as idle before they run: spawn another
        # while more items wait than idle workers could take, or a burst of
        # requests that each wait (durable publishes) would be handled one by one.
        if len(self._items) > self._idle and self._workers < self.limit:
            self._workers += 1
            self._idle += 1  # counted idle until it takes an item
            self._spawn(self._work())

    async def room(self) -> None:
        """Wait while ``backlog`` items or more are queued."""
        while len(self._items) >= self.backlog:
            self._room.clear()
            await self._room.wait()

    async def quiet(self) -> None:
        """Wait until every item put has been handled."""
        await self._quiet.wait()

    async def _work(self) -> None:
        items = self._items
        while True:
            if not items:
                if self._idle == self._workers:
                    self._quiet.set()
                self._wake.clear()
                await self._wake.wait()
                continue
            self._idle -= 1
            try:
                while items:
                    item = items.popleft()
                    if len(items) < self.backlog:
                        self._room.set()
                    await self._handle(item)
            finally:
                self._idle += 1
