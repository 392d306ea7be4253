"""The injectable clocks and timeout_at."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time

import pytest

from seawall import SystemClock, VirtualClock
from seawall._clock import TimerHeap, outside_the_loop, timeout_at


async def test_virtual_sleep_wakes_only_when_time_is_advanced() -> None:
    clock = VirtualClock(start=100.0)
    woke: list[float] = []

    async def sleeper(seconds: float) -> None:
        await clock.sleep(seconds)
        woke.append(clock.time())

    async with asyncio.TaskGroup() as tasks:
        tasks.create_task(sleeper(5))
        tasks.create_task(sleeper(2))
        await asyncio.sleep(0)
        clock.advance(1)
        await asyncio.sleep(0)
        assert woke == []
        clock.advance(1)
        await asyncio.sleep(0)
        assert woke == [102.0]
        clock.advance(3)
    assert woke == [102.0, 105.0]  # each woke at its own due time, in order


async def test_cancelled_timer_does_not_fire() -> None:
    clock = VirtualClock(start=0.0)
    fired: list[int] = []
    timer = clock.call_at(1.0, lambda: fired.append(1))
    clock.call_at(2.0, lambda: fired.append(2))
    timer.cancel()
    assert clock.next_deadline() == 2.0
    clock.advance(3)
    assert fired == [2]


async def test_autojump_runs_long_waits_instantly() -> None:
    clock = VirtualClock(start=0.0)
    loop = asyncio.get_running_loop()
    started = loop.time()
    async with asyncio.TaskGroup() as tasks:
        jumper = tasks.create_task(clock.run_autojump())
        await clock.sleep(3600)
        jumper.cancel()
    assert clock.time() == 3600.0
    assert loop.time() - started < 1.0


async def test_timeout_at_raises_timeout_error_on_the_virtual_clock() -> None:
    clock = VirtualClock(start=0.0)

    async def wait_too_long() -> None:
        async with timeout_at(clock, 10.0):
            await clock.sleep(60)

    async with asyncio.TaskGroup() as tasks:
        jumper = tasks.create_task(clock.run_autojump())
        with pytest.raises(TimeoutError):
            await wait_too_long()
        jumper.cancel()
    assert clock.time() == 10.0


async def test_timeout_at_lets_fast_work_through_and_none_means_no_limit() -> None:
    clock = VirtualClock(start=0.0)
    async with timeout_at(clock, 10.0):
        await asyncio.sleep(0)
    async with timeout_at(clock, None):
        await asyncio.sleep(0)
    assert clock.next_deadline() is None  # the timer was cleaned up


async def test_timeout_at_in_the_past_fails_at_once() -> None:
    clock = VirtualClock(start=50.0)
    ran = False
    with pytest.raises(TimeoutError):
        async with timeout_at(clock, 49.0):
            ran = True
    assert not ran


async def test_outer_cancellation_is_not_mistaken_for_a_timeout() -> None:
    clock = VirtualClock(start=0.0)

    async def body() -> None:
        async with timeout_at(clock, 10.0):
            await asyncio.sleep(3600)

    task = asyncio.create_task(body())
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_system_clock_timers_fire() -> None:
    clock = SystemClock()
    done = asyncio.Event()
    clock.call_at(clock.time() + 0.01, done.set)
    async with asyncio.timeout(2):
        await done.wait()
    async with timeout_at(clock, clock.time() + 5):
        await clock.sleep(0.001)


def test_timer_heap_fires_due_timers_in_order_and_skips_cancelled_ones() -> None:
    clock = VirtualClock(start=0.0)
    timers = TimerHeap(clock)
    fired: list[str] = []
    for when, name in [(3.0, "c"), (1.0, "a"), (2.0, "b"), (2.5, "x")]:
        timer = timers.call_at(when, lambda name=name: fired.append(name))
        if name == "x":
            timer.cancel()
    clock.advance(2.0)
    assert fired == ["a", "b"]
    clock.advance(10.0)
    assert fired == ["a", "b", "c"]
    assert len(timers) == 0


def test_timer_heap_arms_one_clock_timer_for_its_earliest_entry() -> None:
    clock = VirtualClock(start=0.0)
    timers = TimerHeap(clock)
    for when in (30.0, 20.0, 40.0):
        timers.call_at(when, lambda: None)
    assert clock.next_deadline() == 20.0
    live = [t for _, _, t in clock._timers if not t.cancelled]
    assert len(live) == 1


def test_timer_heap_stays_bounded_when_timers_are_cancelled_before_they_fire() -> None:
    clock = VirtualClock(start=0.0)
    timers = TimerHeap(clock)
    keep = timers.call_at(1e9, lambda: None)
    for i in range(10_000):
        timers.call_at(30.0 + i, lambda: None).cancel()
    assert len(timers) < 2100  # compacted once cancelled entries outnumber live ones
    fired: list[float] = []
    timers.call_at(5.0, lambda: fired.append(clock.time()))
    clock.advance(100_000.0)
    assert fired == [5.0]
    keep.cancel()


async def test_timeout_at_on_a_timer_heap_times_out_on_the_virtual_clock() -> None:
    clock = VirtualClock(start=0.0)
    timers = TimerHeap(clock)

    async def advance() -> None:
        await asyncio.sleep(0)
        clock.advance(2.0)

    async with asyncio.TaskGroup() as tasks:
        tasks.create_task(advance())
        with pytest.raises(TimeoutError):
            async with timeout_at(timers, 1.0):
                await asyncio.sleep(3600)
    async with timeout_at(timers, 10.0):
        await asyncio.sleep(0)  # fast work passes; its cancelled entry never fires
    clock.advance(20.0)


async def test_timeout_at_also_works_as_a_plain_with_inside_a_task() -> None:
    clock = VirtualClock(start=0.0)

    async def advance() -> None:
        await asyncio.sleep(0)
        clock.advance(2.0)

    async with asyncio.TaskGroup() as tasks:
        tasks.create_task(advance())
        with pytest.raises(TimeoutError), timeout_at(clock, 1.0):
            await asyncio.sleep(3600)
    with timeout_at(clock, 10.0):
        await asyncio.sleep(0)
    assert clock.next_deadline() is None  # leaving cancelled the timer


async def test_autojump_waits_for_work_outside_the_loop() -> None:
    listener = socket.create_server(("127.0.0.1", 0))

    def pong() -> None:  # a slow server in another thread: this loop sees none of its work
        conn, _ = listener.accept()
        with conn:
            conn.recv(4)
            time.sleep(0.2)
            conn.sendall(b"pong")

    server = threading.Thread(target=pong, daemon=True)
    server.start()
    clock = VirtualClock()
    jumper = asyncio.create_task(clock.run_autojump())
    await asyncio.sleep(0)  # autojump counts executor work from its start on
    try:
        timer_fired = asyncio.Event()
        clock.call_at(clock.time() + 30, timer_fired.set)
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, time.sleep, 0.05)  # the loop looks idle meanwhile
        assert not timer_fired.is_set()  # time stood still while the thread worked
        reader, writer = await asyncio.open_connection(*listener.getsockname()[:2])
        with outside_the_loop():  # waiting on a server, which autojump cannot see
            writer.write(b"ping")
            assert await reader.read(4) == b"pong"  # answered after 200 ms of real time
        writer.close()
        assert not timer_fired.is_set()
        await asyncio.wait_for(timer_fired.wait(), 1.0)  # and jumps again afterwards
    finally:
        server.join(5.0)
        listener.close()
        jumper.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await jumper
