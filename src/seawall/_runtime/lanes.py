"""Per-key lanes: the ordering rule of the dispatcher, with a name of its own.

Items that share a key form a lane and only a lane's head is ever handed
out; items without a key go straight to the ready queue. When the head is
done, the next item of its lane becomes ready. A head that waits for a retry
stays the head (it is handed back with :meth:`Lanes.requeue`), so the items
behind it wait too, while other keys keep flowing.

Idle workers are woken one at a time: a new ready item wakes a worker only
if none is on its way already, and a worker that takes an item while more
are ready wakes the next. A batch of deliveries that one worker drains in
one go (handlers that never wait) thus costs one spare wake-up, not one per
item, while handlers that do wait still get a worker each, a loop turn apart.

An item handled outside the pool (a request answered in its caller's task, see
:meth:`~seawall._runtime.dispatcher.Dispatcher.claim`) takes a place the same way:
:meth:`Lanes.borrow` takes an idle worker out of the pool (it stays asleep, so the
workers and such items together never run more than the pool's size) and
:meth:`Lanes.claim` takes its key's lane, so the key's later items wait behind it.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Generic, TypeVar

__all__ = ["Lanes"]

T = TypeVar("T")


class Lanes(Generic[T]):
    """Ready items for the workers, in per-key order; unbounded, so the caller bounds it."""

    __slots__ = ("_lanes", "_ready", "_waiters", "_woken")

    def __init__(self) -> None:
        self._ready: deque[T] = deque()
        self._lanes: dict[str, deque[T]] = {}  # key -> items behind its head
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._woken = 0  # waiters woken that have not run yet

    def add(self, item: T, key: str | None) -> None:
        """A new item: ready at once, unless an earlier item of its key is still out."""
        if key is None:
            self.requeue(item)
            return
        lane = self._lanes.get(key)
        if lane is None:
            self._lanes[key] = deque()
            self.requeue(item)
        else:
            lane.append(item)

    def done(self, key: str | None) -> None:
        """The head of ``key``'s lane is finished: the next item of that key becomes ready."""
        if key is None:
            return
        lane = self._lanes[key]
        if lane:
            self.requeue(lane.popleft())
        else:
            del self._lanes[key]

    def claim(self, key: str) -> bool:
        """Hold ``key``'s lane for an item handled elsewhere, as if it were its head;
        False (nothing held) if an item of that key is out or waiting. :meth:`done`
        gives it back."""
        lanes = self._lanes
        if key in lanes:
            return False
        lanes[key] = deque()
        return True

    def borrow(self) -> asyncio.Future[None] | None:
        """Take an idle worker out of the pool: the waiter it sleeps on, which no item
        wakes until :meth:`lend_back`. None when an item is ready (the workers come
        first) or no worker is idle."""
        if self._ready:
            return None
        waiters = self._waiters
        while waiters:
            waiter = waiters.pop()  # the newest: a worker woken last, its cache warm
            if not waiter.done():  # a done one's worker was cancelled: drop it
                return waiter
        return None

    def lend_back(self, waiter: asyncio.Future[None]) -> None:
        """Return a worker :meth:`borrow` took; it takes a ready item if there is one."""
        if waiter.done():  # its worker was stopped meanwhile
            return
        self._waiters.append(waiter)
        if self._ready and not self._woken:
            self._wake_one()

    def requeue(self, item: T) -> None:
        """Make ``item`` ready (a new unkeyed item, or a lane head back for a retry)."""
        self._ready.append(item)
        if self._waiters and not self._woken:
            self._wake_one()

    def _wake_one(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                self._woken += 1
                return

    def take(self) -> T | None:
        """The next ready item, or None if there is none (no await: the worker's fast path)."""
        ready = self._ready
        if not ready:
            return None
        item = ready.popleft()
        if ready and self._waiters and not self._woken:
            self._wake_one()  # more is ready than this worker takes: pass it on
        return item

    async def get(self) -> T:
        """The next ready item, waiting for one if there is none."""
        while not self._ready:
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                await waiter
            except asyncio.CancelledError:
                if waiter.done() and not waiter.cancelled():
                    self._woken -= 1
                    if self._ready:
                        self._wake_one()  # woken, then cancelled: pass the wake-up on
                raise
            self._woken -= 1
        item = self.take()
        assert item is not None
        return item

    def clear(self) -> None:
        """Forget everything (after the subscription is gone)."""
        self._ready.clear()
        self._lanes.clear()
