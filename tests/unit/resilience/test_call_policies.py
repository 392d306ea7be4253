"""Call policies in a running system, on the virtual clock: the breaker opens after the
configured failures and then fails calls before anything is published (counted by the
test system's recording transport, a wrapper around the real memory transport); half-open
admits the configured trials and success closes it; the call past ``max_outstanding``
waits or is shed; domain errors and slow calls; breakers in health."""

from __future__ import annotations

import asyncio

import pytest

from seawall import (
    CircuitOpen,
    Command,
    ConfigurationError,
    Context,
    DeadlineExceeded,
    Document,
    Overloaded,
    RemoteError,
    RetryPolicy,
    Service,
    System,
)
from seawall.discovery import BreakerState
from seawall.resilience import BreakerPolicy, CallPolicy, Policies
from seawall.testing import TestSystem


class Charge(Command, frozen=True):
    cents: int


class Charged(Document, frozen=True):
    cents: int


class OutOfFunds(Exception):
    """A domain answer of the payments service, not a failure of it."""


BREAKER = BreakerPolicy(failure_rate=0.5, window=4, minimum_calls=4, open_for=10.0, trials=2)


class Payments:
    """A payments service whose behaviour the test switches: fail, succeed, or hold calls."""

    def __init__(self) -> None:
        self.service = Service("payments", retry=RetryPolicy(max_attempts=1))
        self.failing = False
        self.calls = 0
        self.gate: asyncio.Event | None = None
        self.running = 0
        self.most_running = 0
        self.work = 0.0

        @self.service.command
        async def charge(cmd: Charge, ctx: Context) -> Charged:
            self.calls += 1
            self.running += 1
            self.most_running = max(self.most_running, self.running)
            try:
                if self.gate is not None:
                    await self.gate.wait()
                if self.work:
                    await ctx.sleep(self.work)
                if cmd.cents < 0:
                    raise OutOfFunds(f"cannot charge {cmd.cents}")
                if self.failing:
                    raise RuntimeError("the card processor is down")
                return Charged(cents=cmd.cents)
            finally:
                self.running -= 1


def policies(**fields: object) -> Policies:
    return Policies(targets={"payments": CallPolicy(**fields)})  # type: ignore[arg-type]


async def test_the_breaker_opens_fails_fast_without_publishing_and_closes_after_trials() -> None:
    payments = Payments()
    payments.failing = True
    async with TestSystem(
        payments.service, policies=policies(breaker=BREAKER), raise_handler_errors=False
    ) as system:
        ctx = system.context()
        for n in range(4):
            with pytest.raises(RemoteError, match="card processor"):
                await ctx.request("payments", Charge(cents=n), returns=Charged)
        assert system.system.breakers() == (
            BreakerState(target="payments", state="open", failure_rate=1.0),
        )
        published, now, calls = len(system.transport.records), system.clock.time(), payments.calls

        with pytest.raises(CircuitOpen) as caught:
            await ctx.request("payments", Charge(cents=5), returns=Charged)
        assert caught.value.target == "payments"
        assert 0 < caught.value.retry_after <= 10.0
        assert len(system.transport.records) == published  # nothing was published
        assert system.clock.time() == now  # and no time passed waiting for anything
        assert payments.calls == calls

        # half-open after the interval: the configured two trials go out, a third does not
        payments.failing = False
        payments.gate = asyncio.Event()
        await ctx.sleep(caught.value.retry_after)
        trials = [ctx.request("payments", Charge(cents=n), returns=Charged) for n in (6, 7)]
        with pytest.raises(CircuitOpen):
            ctx.request("payments", Charge(cents=8), returns=Charged)
        assert system.system.breakers()[0].state == "half-open"
        payments.gate.set()
        assert [(await t).cents for t in trials] == [6, 7]
        assert system.system.breakers()[0].state == "closed"
        assert (await ctx.request("payments", Charge(cents=9), returns=Charged)).cents == 9
        health = system.system.health()
    assert health.breakers == (BreakerState(target="payments", state="closed"),)
    assert health.to_dict()["breakers"] == [
        {"target": "payments", "state": "closed", "failure_rate": 0.0}
    ]


async def test_a_failed_trial_opens_it_again() -> None:
    payments = Payments()
    payments.failing = True
    async with TestSystem(
        payments.service, policies=policies(breaker=BREAKER), raise_handler_errors=False
    ) as system:
        ctx = system.context()
        for n in range(4):
            with pytest.raises(RemoteError):
                await ctx.request("payments", Charge(cents=n))
        await ctx.sleep(10.0)
        with pytest.raises(RemoteError):
            await ctx.request("payments", Charge(cents=5))  # the trial fails
        with pytest.raises(CircuitOpen):
            await ctx.request("payments", Charge(cents=6))


async def test_declared_domain_errors_do_not_trip_it_and_slow_calls_do() -> None:
    payments = Payments()
    policy = policies(breaker=BREAKER, domain_errors=("OutOfFunds",))
    async with TestSystem(payments.service, policies=policy, raise_handler_errors=False) as system:
        ctx = system.context()
        for _ in range(8):
            with pytest.raises(RemoteError, match="OutOfFunds"):
                await ctx.request("payments", Charge(cents=-1))
        assert system.system.breakers()[0].state == "closed"

        slow = BreakerPolicy(window=2, minimum_calls=2, slow_call=1.0, open_for=5.0)
        payments.work = 2.0  # answers, but slower than the breaker tolerates
        for n in range(2):
            reply = ctx.request("payments", Charge(cents=n), policy=CallPolicy(breaker=slow))
            assert (await reply).cents == n
        # the target already had its breaker (BREAKER): two slow calls of four do not open it
        assert system.system.breakers()[0].state == "closed"
        for n in range(2):
            await ctx.request("payments", Charge(cents=n))
        assert system.system.breakers()[0].state == "closed"  # slow_call is not BREAKER's


async def test_slow_calls_open_a_breaker_that_counts_them() -> None:
    payments = Payments()
    payments.work = 2.0
    slow = BreakerPolicy(window=2, minimum_calls=2, slow_call=1.0, open_for=5.0)
    async with TestSystem(payments.service, policies=policies(breaker=slow)) as system:
        ctx = system.context()
        for n in range(2):
            assert (await ctx.request("payments", Charge(cents=n), returns=Charged)).cents == n
        with pytest.raises(CircuitOpen):
            await ctx.request("payments", Charge(cents=3))


async def test_the_call_past_max_outstanding_is_shed_at_once() -> None:
    payments = Payments()
    payments.gate = asyncio.Event()
    policy = policies(max_outstanding=2, overflow="shed")
    async with TestSystem(payments.service, policies=policy) as system:
        ctx = system.context()
        first = [ctx.request("payments", Charge(cents=n), returns=Charged) for n in (1, 2)]
        await asyncio.sleep(0)
        published = len(system.transport.records)
        with pytest.raises(Overloaded, match="2 calls to 'payments' are already outstanding"):
            ctx.request("payments", Charge(cents=3), returns=Charged)
        assert len(system.transport.records) == published
        payments.gate.set()
        assert [(await r).cents for r in first] == [1, 2]
        # the slots are back
        assert (await ctx.request("payments", Charge(cents=4), returns=Charged)).cents == 4


async def test_the_call_past_max_outstanding_waits_for_a_slot_within_its_deadline() -> None:
    payments = Payments()
    payments.work = 1.0
    policy = policies(max_outstanding=2, timeout=10.0)
    async with TestSystem(payments.service, policies=policy) as system:
        ctx = system.context()
        started = system.clock.time()
        replies = await asyncio.gather(
            *(ctx.request("payments", Charge(cents=n), returns=Charged) for n in range(5))
        )
        assert [r.cents for r in replies] == list(range(5))
        assert payments.most_running == 2  # never more than two at the target at once
        assert system.clock.time() - started == pytest.approx(3.0)  # 5 calls, 2 at a time

        payments.work = 20.0  # the slots stay taken past a waiting call's deadline
        calls = [ctx.request("payments", Charge(cents=n), returns=Charged) for n in range(3)]
        results = await asyncio.gather(*calls, return_exceptions=True)
        assert all(isinstance(r, DeadlineExceeded) for r in results)
        assert "could not send" in str(results[2])  # the third never got a slot


async def test_sends_are_guarded_too() -> None:
    payments = Payments()
    payments.failing = True
    breaker = BreakerPolicy(window=2, minimum_calls=2, open_for=5.0)
    async with TestSystem(
        payments.service, policies=policies(breaker=breaker), raise_handler_errors=False
    ) as system:
        ctx = system.context()
        for n in range(2):
            with pytest.raises(RemoteError):
                await ctx.request("payments", Charge(cents=n))
        published = len(system.transport.records)
        with pytest.raises(CircuitOpen):
            await ctx.send("payments", Charge(cents=3))
        assert len(system.transport.records) == published


async def test_a_dependency_without_a_breaker_is_refused() -> None:
    orders = Service("orders", depends_on=["payments"])
    with pytest.raises(ConfigurationError, match="no call policy gives 'payments' a circuit"):
        System(orders)
    with pytest.raises(ConfigurationError, match="write \\['payments'\\]"):
        Service("orders", depends_on="payments")
    with pytest.raises(ConfigurationError, match="overflow='drop'"):
        CallPolicy(overflow="drop")  # type: ignore[arg-type]
