"""Publish until stored (seawall._transport.publishing): the schedule as a table, and the
loop on a virtual clock against scripted broker answers."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable

import pytest

from seawall import ChannelFull, ConnectionLost, VirtualClock
from seawall._transport.publishing import Retries, until_stored

FULL = ChannelFull("channel 'orders' is full")
LOST = ConnectionLost("the link broke")


async def on_autojump(clock: VirtualClock, work: Awaitable[None]) -> None:
    jumper = asyncio.create_task(clock.run_autojump())
    try:
        await work
    finally:
        jumper.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await jumper


def test_pauses_double_from_5_ms_to_at_most_200_ms() -> None:
    retries = Retries(None, now=0.0)
    pauses = [retries.failed(LOST, now=0.0, budget=None) for _ in range(8)]
    assert pauses == [0.005, 0.01, 0.02, 0.04, 0.08, 0.16, 0.2, 0.2]


@pytest.mark.parametrize(
    ("failures", "now", "budget", "raised"),
    [
        ([LOST], 10.0, 1.0, LOST),  # time is up: the last failure
        ([FULL], 10.0, 1.0, FULL),
        ([FULL, LOST], 10.0, 0.5, FULL),  # the lost link was our deadline cutting a try short
        ([FULL, LOST], 10.0, 5.0, LOST),  # a whole try that lost the link: the link is the cause
        ([LOST, LOST], 10.0, 0.5, LOST),  # never full: nothing else to blame
    ],
)
def test_what_is_raised_when_time_is_up(
    failures: list[Exception], now: float, budget: float, raised: Exception
) -> None:
    retries = Retries(10.0, now=0.0, answer=2.0)
    for failure in failures[:-1]:
        retries.failed(failure, now=1.0, budget=budget)  # type: ignore[arg-type]
    with pytest.raises(type(raised)) as info:
        retries.failed(failures[-1], now=now, budget=budget)  # type: ignore[arg-type]
    assert info.value is raised


def test_a_pause_never_runs_past_the_deadline_nor_a_try_below_a_millisecond() -> None:
    retries = Retries(1.0, now=0.0)
    for _ in range(6):
        retries.failed(LOST, now=0.0, budget=1.0)
    assert retries.failed(LOST, now=0.99, budget=0.01) == pytest.approx(0.01)
    assert retries.budget(now=0.9995) == 0.001
    assert Retries(None, now=0.0).budget(now=5.0) is None


async def test_the_loop_waits_out_lost_links_and_full_channels_then_stores() -> None:
    clock = VirtualClock()
    answers: list[bool | ChannelFull | ConnectionLost] = [LOST, FULL, False, FULL, True]
    budgets: list[float | None] = []

    async def attempt(left: float | None) -> bool | ChannelFull:
        budgets.append(left)
        answer = answers.pop(0)
        if isinstance(answer, ConnectionLost):
            raise answer
        return answer

    start = clock.time()
    await on_autojump(clock, until_stored(clock, 30.0, attempt))
    assert answers == []
    assert len(budgets) == 5
    # three failures slept 5, 10 and 20 ms; "again" (False) did not sleep at all
    assert clock.time() - start == pytest.approx(0.035, abs=1e-6)


async def test_the_loop_gives_up_with_the_full_channel_at_the_deadline() -> None:
    clock = VirtualClock()
    tries = 0

    async def attempt(left: float | None) -> bool | ChannelFull:
        nonlocal tries
        tries += 1
        return FULL

    start = clock.time()
    with pytest.raises(ChannelFull):
        await on_autojump(clock, until_stored(clock, 2.0, attempt))
    assert clock.time() - start == pytest.approx(2.0, abs=1e-6)
    assert 10 < tries < 20  # 5 ms doubling to 200 ms: about a dozen tries in 2 s
