"""Following the global log: catch up in batches, then wake on appends or a poll (virtual time)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator

from seawall import VirtualClock
from seawall.es import RecordedEvent
from seawall.es._follow import AppendSignal, follow

POLL = 5.0


def event(position: int) -> RecordedEvent:
    return RecordedEvent(
        position=position,
        stream="s",
        version=position,
        id=f"e{position}",
        type="t",
        type_version="1.0.0",
        time=0.0,
        data=b"{}",
    )


class Log:
    """The store's side: events by position, the reads made, the signal of its appends."""

    def __init__(self, count: int) -> None:
        self.events = [event(p) for p in range(1, count + 1)]
        self.reads: list[int] = []
        self.signal = AppendSignal()

    async def read(self, after: int, limit: int) -> list[RecordedEvent]:
        self.reads.append(after)
        return [e for e in self.events if e.position > after][:limit]

    def append(self, *, here: bool) -> None:
        """An append by this process (which fires the signal) or by another one."""
        self.events.append(event(len(self.events) + 1))
        if here:
            self.signal.fire()


async def take(follower: AsyncGenerator[RecordedEvent, None], count: int) -> list[int]:
    """The next ``count`` positions; fails fast (real time) if they do not come."""
    async with asyncio.timeout(2.0):
        return [(await anext(follower)).position for _ in range(count)]


async def turns() -> None:
    for _ in range(10):
        await asyncio.sleep(0)


async def test_catches_up_in_batches_then_an_append_here_wakes_it_at_once() -> None:
    log, clock = Log(5), VirtualClock()
    follower = follow(log.read, log.signal, clock, after=1, batch=2, poll=POLL)
    assert await take(follower, 4) == [2, 3, 4, 5]
    waiting = asyncio.create_task(take(follower, 1))
    await turns()
    assert not waiting.done()
    assert log.reads == [1, 3, 5]  # a short batch (one event) meant caught up: it waits
    log.append(here=True)
    assert await waiting == [6]  # no poll needed: the clock never moved
    await follower.aclose()


async def test_an_append_by_another_process_is_read_after_the_poll_period() -> None:
    log, clock = Log(0), VirtualClock()
    follower = follow(log.read, log.signal, clock, after=0, batch=10, poll=POLL)
    waiting = asyncio.create_task(take(follower, 1))
    await turns()
    log.append(here=False)
    clock.advance(POLL - 0.5)
    await turns()
    assert not waiting.done()
    clock.advance(0.5)
    assert await waiting == [1]
    await follower.aclose()


async def test_an_append_that_commits_during_a_read_is_not_missed() -> None:
    # The signal's event is taken before reading: an append that fires while the read
    # runs (and that the read did not see) wakes the wait that follows at once.
    log, clock = Log(1), VirtualClock()
    read = log.read

    async def racing_read(after: int, limit: int) -> list[RecordedEvent]:
        events = await read(after, limit)
        if len(log.events) == 1:
            log.append(here=True)
        return events

    follower = follow(racing_read, log.signal, clock, after=0, batch=10, poll=POLL)
    assert await take(follower, 2) == [1, 2]  # no poll period passed
    await follower.aclose()
