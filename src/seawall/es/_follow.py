"""Following the global log: catch-up reads, then waiting for appends.

Shared by both backends. A follower reads batches above its position until a
batch comes back short (caught up), then waits until the store says something
was appended in this process, or ``poll`` seconds pass (appends by other
processes), and reads again. Positions only grow, so nothing is read twice.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, Awaitable, Callable

from .._clock import Clock, timeout_at
from ._records import RecordedEvent

__all__ = ["AppendSignal", "follow"]


class AppendSignal:
    """Wakes followers in this process when an append commits."""

    def __init__(self) -> None:
        self._event = asyncio.Event()

    def current(self) -> asyncio.Event:
        """The event the next append will set; take it *before* reading."""
        return self._event

    def fire(self) -> None:
        """An append committed: wake every waiter and arm a fresh event."""
        self._event.set()
        self._event = asyncio.Event()


async def follow(
    read: Callable[[int, int], Awaitable[list[RecordedEvent]]],
    signal: AppendSignal,
    clock: Clock,
    *,
    after: int,
    batch: int,
    poll: float,
) -> AsyncGenerator[RecordedEvent, None]:
    """Every event above ``after``, in position order, forever."""
    while True:
        woken = signal.current()
        events = await read(after, batch)
        for event in events:
            yield event
        if events:
            after = events[-1].position
        if len(events) < batch:
            with contextlib.suppress(TimeoutError):
                async with timeout_at(clock, clock.time() + poll):
                    await woken.wait()
