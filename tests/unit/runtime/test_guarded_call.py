"""The runtime's guarded call (what ``ctx.send`` under a policy publishes through, and what
``benchmarks.resilience`` measures): a slot held while the call runs, outcomes told to the
breaker, failures blamed on the target, waiting for a slot within a deadline, and an
admitted half-open trial given back when its wait for a slot fails."""

from __future__ import annotations

import asyncio
import time

import pytest

from seawall import CircuitOpen, Overloaded
from seawall._clock import SystemClock
from seawall._runtime.guarded import GuardedCall, blamed
from seawall.resilience import BreakerPolicy, CallPolicy, Guard


def guarded(policy: CallPolicy) -> tuple[Guard, GuardedCall[str]]:
    guard = Guard("payments", policy)
    return guard, GuardedCall[str](guard, guard.policy, SystemClock())


async def test_a_call_holds_a_slot_while_it_runs_and_its_success_is_counted() -> None:
    guard, call = guarded(CallPolicy(breaker=BreakerPolicy(window=2, minimum_calls=2),
                                     max_outstanding=2))  # fmt: skip
    seen: list[int] = []

    async def charge() -> str:
        seen.append(guard.free)
        return "charged"

    for _ in range(300):  # past a whole run of the fast path's counted successes
        assert await call.run(charge) == "charged"
    assert seen == [1] * 300
    assert guard.free == 2
    guard.sync()
    assert guard.breaker is not None
    assert guard.breaker.stats.succeeded == 300


async def test_failures_open_the_breaker_and_are_blamed_on_the_target() -> None:
    guard, call = guarded(CallPolicy(breaker=BreakerPolicy(window=2, minimum_calls=2)))
    calls = 0

    async def broken() -> str:
        nonlocal calls
        calls += 1
        raise ConnectionError("refused")

    for _ in range(2):
        with pytest.raises(ConnectionError) as caught:
            await call.run(broken)
        assert blamed(caught.value) == "payments"
    with pytest.raises(CircuitOpen):
        await call.run(broken)
    assert calls == 2  # the open breaker refused the third before it ran
    assert guard.free > 0  # every slot given back


async def test_a_cancelled_call_says_nothing_about_the_target() -> None:
    guard, call = guarded(CallPolicy(breaker=BreakerPolicy(window=2, minimum_calls=2)))

    async def slow() -> str:
        await asyncio.sleep(10)
        return "late"

    for _ in range(3):
        task = asyncio.create_task(call.run(slow))
        await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert guard.breaker is not None
    assert guard.breaker.state == "closed"
    assert guard.breaker.stats.failed == 0


async def test_a_full_bulkhead_queues_the_call_until_a_slot_or_its_deadline() -> None:
    guard, call = guarded(CallPolicy(max_outstanding=1))
    gate = asyncio.Event()

    async def held() -> str:
        await gate.wait()
        return "held"

    async def quick() -> str:
        return "quick"

    first = asyncio.create_task(call.run(held))
    await asyncio.sleep(0)
    with pytest.raises(TimeoutError):
        await call.run(quick, deadline=time.time() + 0.02)
    second = asyncio.create_task(call.run(quick, deadline=time.time() + 5.0))
    await asyncio.sleep(0)
    assert not second.done()  # waiting for the slot
    gate.set()
    assert await first == "held"
    assert await second == "quick"
    assert (guard.free, guard.waiting) == (1, 0)


async def test_a_full_bulkhead_that_sheds_refuses_at_once() -> None:
    guard, call = guarded(CallPolicy(max_outstanding=1, overflow="shed"))
    gate = asyncio.Event()

    async def held() -> str:
        await gate.wait()
        return "held"

    first = asyncio.create_task(call.run(held))
    await asyncio.sleep(0)
    with pytest.raises(Overloaded):
        await call.run(held)
    gate.set()
    await first
    assert guard.free == 1


async def test_a_half_open_trial_whose_wait_for_a_slot_fails_is_given_back() -> None:
    breaker = BreakerPolicy(window=2, minimum_calls=2, open_for=0.01, trials=2)
    guard, call = guarded(CallPolicy(breaker=breaker, max_outstanding=1))

    async def broken() -> str:
        raise ConnectionError("refused")

    for _ in range(2):
        with pytest.raises(ConnectionError):
            await call.run(broken)
    await asyncio.sleep(0.02)  # open_for is over: the next calls are trials
    gate = asyncio.Event()

    async def held() -> str:
        await gate.wait()
        return "held"

    first = asyncio.create_task(call.run(held))  # trial 1 holds the only slot
    await asyncio.sleep(0)
    with pytest.raises(TimeoutError):  # trial 2 gets no slot in time
        await call.run(held, deadline=time.time() + 0.02)
    third = asyncio.create_task(call.run(held, deadline=time.time() + 5.0))
    await asyncio.sleep(0)
    assert not third.done()  # admitted as a trial again (not CircuitOpen): waits for the slot
    gate.set()
    assert await first == await third == "held"
    assert guard.breaker is not None
    assert guard.breaker.state == "closed"
