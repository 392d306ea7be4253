"""Time, read through an injectable clock.

Everything time-based in seawall (retries, deadlines, backoff, heartbeats,
supervision windows) asks a :class:`Clock`, never ``time`` or
``asyncio.sleep`` directly, so tests can run on :class:`VirtualClock` and
never sleep. Times are wall-clock seconds since the epoch, because deadlines
travel between processes.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import logging
import math
import time
import weakref
from collections.abc import Callable, Iterator
from types import TracebackType
from typing import Any, Protocol

_log = logging.getLogger("seawall.clock")
__all__ = [
    "Clock",
    "Deadline",
    "SystemClock",
    "Timer",
    "TimerHeap",
    "VirtualClock",
    "outside_the_loop",
    "timeout_at",
    "wait_until",
]


class Timer(Protocol):
    """A scheduled callback that can still be cancelled."""

    def cancel(self) -> None: ...


class Clock(Protocol):
    """The source of time for seawall code."""

    def time(self) -> float:
        """Wall-clock time, seconds since the epoch."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Suspend the calling task for ``seconds``."""
        ...

    def call_at(self, when: float, callback: Callable[[], None]) -> Timer:
        """Run ``callback`` once the clock reaches ``when`` (epoch seconds)."""
        ...


class SystemClock:
    """The real clock: ``time.time`` and the running event loop's timers."""

    # The builtin itself, not a method calling it: read several times per message, and
    # a Python frame around ``time.time`` costs more than the call it wraps.
    time = staticmethod(time.time)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))

    def call_at(self, when: float, callback: Callable[[], None]) -> Timer:
        loop = asyncio.get_running_loop()
        return loop.call_later(max(0.0, when - time.time()), callback)


class _VirtualTimer:
    __slots__ = ("callback", "cancelled", "when")

    def __init__(self, when: float, callback: Callable[[], None]) -> None:
        self.when = when
        self.callback: Callable[[], None] | None = callback
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True
        self.callback = None


class VirtualClock:
    """A clock that moves only when told to, or when every task is waiting on it.

    ``advance(seconds)`` fires due timers in time order. With ``autojump``
    running (see :meth:`run_autojump`), the clock jumps to the next timer as soon
    as the event loop has nothing else to run, so a test of a 30-second backoff
    finishes in microseconds.
    """

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self._now = start
        self._timers: list[tuple[float, int, _VirtualTimer]] = []
        self._seq = itertools.count()

    def hold(self) -> contextlib.AbstractContextManager[None]:
        """Keep autojump from moving time while the block runs: :func:`outside_the_loop`."""
        return outside_the_loop()

    def time(self) -> float:
        return self._now

    async def sleep(self, seconds: float) -> None:
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        def wake() -> None:
            if not future.done():
                future.set_result(None)

        timer = self.call_at(self._now + seconds, wake)
        try:
            await future
        finally:
            timer.cancel()

    def call_at(self, when: float, callback: Callable[[], None]) -> Timer:
        timer = _VirtualTimer(when, callback)
        heapq.heappush(self._timers, (when, next(self._seq), timer))
        return timer

    def next_deadline(self) -> float | None:
        """When the earliest live timer fires, or None when none is set."""
        while self._timers and self._timers[0][2].cancelled:
            heapq.heappop(self._timers)
        return self._timers[0][0] if self._timers else None

    def advance(self, seconds: float) -> None:
        """Move time forward by ``seconds``, firing every timer that falls due."""
        self.advance_to(self._now + seconds)

    def advance_to(self, when: float) -> None:
        """Move time forward to ``when``, firing due timers in order."""
        while self._timers and self._timers[0][0] <= when:
            due, _, timer = heapq.heappop(self._timers)
            self._now = max(self._now, due)
            if timer.callback is not None:
                callback, timer.callback = timer.callback, None
                callback()
        self._now = max(self._now, when)

    async def run_autojump(self, idle_rounds: int = 3) -> None:
        """Jump to the next timer whenever the loop has been idle ``idle_rounds`` times."""
        loop = asyncio.get_running_loop()
        with _executor_work_counted(loop):
            await self._autojump(loop, idle_rounds)

    async def _autojump(self, loop: asyncio.AbstractEventLoop, idle_rounds: int) -> None:
        idle = 0
        while True:
            await asyncio.sleep(0)
            if self._idle(loop):
                idle += 1
            else:
                idle = 0
            if idle >= idle_rounds:
                idle = 0
                due = self.next_deadline()
                if due is None:
                    await asyncio.sleep(0.001)  # nothing scheduled: let real I/O move
                else:
                    self.advance_to(due)

    def _idle(self, loop: asyncio.AbstractEventLoop) -> bool:
        """Whether nothing but a timer of ours can move things on: no runnable callback
        (CPython keeps them in ``loop._ready``), no work awaited from a thread or a
        server, no real timer about to fire."""
        if len(getattr(loop, "_ready", ())) or _waiting_elsewhere(loop):
            return False
        return not _real_timer_due_soon(loop)


async def wait_until(clock: Clock, event: asyncio.Event, when: float | None) -> None:
    """Wait until ``event`` is set or ``clock`` reaches ``when`` (None: no time limit).

    The event is left as it is; a caller that loops clears it before waiting again.
    """
    timer = None if when is None else clock.call_at(when, event.set)
    try:
        await event.wait()
    finally:
        if timer is not None:
            timer.cancel()


_OFF_LOOP: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, int] = weakref.WeakKeyDictionary()
"""Per event loop: awaits under way on work done elsewhere (threads, the network)."""


@contextlib.contextmanager
def outside_the_loop() -> Iterator[None]:
    """Wrap an await on work done by another thread, process or server.

    While such work runs the event loop looks idle, and a :class:`VirtualClock`
    on autojump would leap to its next timer (a request's deadline, say) before
    the work could finish. Under this block it waits instead, whichever clock
    the code awaiting uses; without autojump this costs two dictionary updates.
    Work run through ``loop.run_in_executor`` (``asyncio.to_thread`` included)
    is counted by autojump itself and needs no wrapping.
    """
    loop = asyncio.get_running_loop()
    _OFF_LOOP[loop] = _OFF_LOOP.get(loop, 0) + 1
    try:
        yield
    finally:
        _OFF_LOOP[loop] -= 1


def _waiting_elsewhere(loop: asyncio.AbstractEventLoop) -> bool:
    return _OFF_LOOP.get(loop, 0) > 0


@contextlib.contextmanager
def _executor_work_counted(loop: asyncio.AbstractEventLoop) -> Iterator[None]:
    """Count every ``run_in_executor`` future of ``loop`` as work outside it until done."""
    if "run_in_executor" in vars(loop):  # an outer autojump counts already
        yield
        return
    original = loop.run_in_executor

    def run_in_executor(executor: Any, func: Callable[..., Any], *args: Any) -> Any:
        future = original(executor, func, *args)
        _OFF_LOOP[loop] = _OFF_LOOP.get(loop, 0) + 1
        future.add_done_callback(lambda _: _OFF_LOOP.__setitem__(loop, _OFF_LOOP[loop] - 1))
        return future

    loop.run_in_executor = run_in_executor  # type: ignore[method-assign,assignment]
    try:
        yield
    finally:
        del loop.run_in_executor


def _real_timer_due_soon(loop: asyncio.AbstractEventLoop) -> bool:
    scheduled = getattr(loop, "_scheduled", ())  # a heap: only its head is the earliest
    live = [h.when() for h in scheduled if not h.cancelled()]
    return bool(live) and min(live) - loop.time() < 0.05


class _HeapTimer:
    __slots__ = ("_heap", "callback")

    def __init__(self, heap: TimerHeap, callback: Callable[[], None]) -> None:
        self._heap = heap
        self.callback: Callable[[], None] | None = callback

    def cancel(self) -> None:
        if self.callback is not None:
            self.callback = None
            heap = self._heap  # TimerHeap._cancelled's count, inline: two timers a request
            heap._dead += 1
            if heap._dead > 1024 and 2 * heap._dead > len(heap._heap):
                heap._compact()


class TimerHeap:
    """Many timers on one timer of a clock, for deadlines set and cancelled per message.

    A request's reply timeout and a handler's deadline are armed for every
    message and nearly always cancelled long before they fire. On the event
    loop each costs a timer handle, a push on the loop's heap and its later
    removal. Here arming is a push on this heap and cancelling clears a field;
    only the earliest entry has a timer on the clock. A cancelled entry stays
    until it reaches the top (its clock timer then fires for nothing and arms
    the next) or until cancelled entries outnumber live ones and the heap is
    compacted, so memory stays bounded. Time and sleep are the clock's own, so
    a TimerHeap passes as a :class:`Clock` (e.g. to :func:`timeout_at`).
    """

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self._heap: list[tuple[float, int, _HeapTimer]] = []
        self._seq = itertools.count()
        self._armed: Timer | None = None
        self._armed_at = math.inf
        self._dead = 0  # cancelled entries still in the heap

    def __len__(self) -> int:
        """Entries held, cancelled ones included (bounded by compaction)."""
        return len(self._heap)

    def time(self) -> float:
        return self.clock.time()

    async def sleep(self, seconds: float) -> None:
        await self.clock.sleep(seconds)

    def call_at(self, when: float, callback: Callable[[], None]) -> Timer:
        timer = _HeapTimer(self, callback)
        heapq.heappush(self._heap, (when, next(self._seq), timer))
        if when < self._armed_at:
            self._arm(when)
        return timer

    def _arm(self, when: float) -> None:
        if self._armed is not None:
            self._armed.cancel()
        self._armed_at = when
        self._armed = self.clock.call_at(when, self._fire)

    def _fire(self) -> None:
        self._armed, self._armed_at = None, math.inf
        heap = self._heap
        now = self.clock.time()
        while heap and (heap[0][2].callback is None or heap[0][0] <= now):
            timer = heapq.heappop(heap)[2]
            callback, timer.callback = timer.callback, None
            if callback is None:
                self._dead -= 1
                continue
            try:
                callback()
            except Exception:
                _log.exception("timer callback %r failed", callback)
        if heap:
            self._arm(heap[0][0])

    def _compact(self) -> None:
        """Drop the cancelled entries (they outnumber the live ones)."""
        self._heap = [entry for entry in self._heap if entry[2].callback is not None]
        heapq.heapify(self._heap)
        self._dead = 0


def timeout_at(clock: Clock, when: float | None) -> Deadline:
    """Cancel the body when ``clock`` reaches ``when`` and raise ``TimeoutError``.

    ``when=None`` means no limit. Works the same on the system and virtual clock.
    """
    return Deadline(clock, when)


class Deadline:
    """The context manager of :func:`timeout_at`, for ``async with`` or plain ``with``.

    A class rather than an ``@asynccontextmanager`` generator: the dispatcher
    enters one per message, and a generator-based manager costs an async
    generator, its registration with the loop and three awaitables each time.
    Entering and leaving never wait, so inside a task plain ``with`` works too
    and saves the two coroutines of ``async with``.
    """

    __slots__ = ("_baseline", "_clock", "_fired", "_task", "_timer", "_when")

    def __init__(self, clock: Clock, when: float | None) -> None:
        self._clock = clock
        self._when = when
        self._task: asyncio.Task[Any] | None = None
        self._timer: Timer | None = None
        self._fired = False
        self._baseline = 0

    def __enter__(self) -> None:
        if self._when is None:
            return
        task = asyncio.current_task()
        assert task is not None, "timeout_at works inside a task only"
        if self._when <= self._clock.time():
            raise TimeoutError
        self._task = task
        self._baseline = task.cancelling()
        self._timer = self._clock.call_at(self._when, self._expire)

    async def __aenter__(self) -> None:
        self.__enter__()

    def _expire(self) -> None:
        self._fired = True
        assert self._task is not None
        self._task.cancel()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._timer is None:
            return
        self._timer.cancel()
        if (
            self._fired
            and exc_type is not None
            and issubclass(exc_type, asyncio.CancelledError)
            and self._task is not None
            and self._task.uncancel() <= self._baseline
        ):
            raise TimeoutError from None

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.__exit__(exc_type, exc, tb)
