"""The circuit breaker's state machine, fed times by hand: opening on the failure share of
its window, refusing while open, trial calls while half-open, closing or re-opening."""

from __future__ import annotations

import pytest

from seawall import ConfigurationError
from seawall.resilience import BreakerPolicy, Bulkhead, CallPolicy, CircuitBreaker, Guard

POLICY = BreakerPolicy(failure_rate=0.5, window=4, minimum_calls=4, open_for=10.0, trials=2)


def failing(breaker: CircuitBreaker, n: int, now: float = 0.0) -> None:
    for _ in range(n):
        assert breaker.admit(now)
        breaker.record(now, failed=True)


def test_defaults_are_resilience4js() -> None:
    policy = BreakerPolicy()
    assert (policy.failure_rate, policy.window, policy.minimum_calls) == (0.5, 100, 100)
    assert (policy.open_for, policy.trials, policy.slow_call) == (60.0, 10, None)


def test_it_opens_once_the_minimum_calls_fail_at_the_rate() -> None:
    breaker = CircuitBreaker("payments", POLICY)
    failing(breaker, 3)
    assert breaker.state == "closed"  # 3 of 3 failed, but fewer than minimum_calls
    failing(breaker, 1, now=5.0)
    assert breaker.state == "open"
    assert breaker.open_until == 15.0
    assert not breaker.admit(14.99)
    assert breaker.retry_after(14.0) == pytest.approx(1.0)
    assert breaker.stats.rejected == 1
    assert breaker.stats.opened == 1


def test_failures_under_the_rate_keep_it_closed_and_the_window_slides() -> None:
    breaker = CircuitBreaker("payments", POLICY)
    for failed in (True, False, False, False, True, False, False):
        assert breaker.admit(0.0)
        breaker.record(0.0, failed=failed)
    assert breaker.state == "closed"
    assert breaker.failure_rate == 0.25  # one failure among the latest four calls
    failing(breaker, 1)
    assert breaker.state == "open"  # two of the latest four: 50 % opens it


def test_half_open_admits_the_configured_trials_and_success_closes_it() -> None:
    breaker = CircuitBreaker("payments", POLICY)
    failing(breaker, 4)
    assert breaker.admit(10.0)  # the open interval is over: half-open
    assert breaker.state == "half-open"
    assert breaker.admit(10.0)
    assert not breaker.admit(10.0)  # the third call finds both trials out
    assert breaker.blocked(10.0)
    breaker.record(10.5, failed=False)
    assert breaker.state == "half-open"
    breaker.record(10.5, failed=False)
    assert breaker.state == "closed"
    assert breaker.failure_rate == 0.0  # a fresh window


def test_a_failed_trial_opens_it_again_for_another_interval() -> None:
    breaker = CircuitBreaker("payments", POLICY)
    failing(breaker, 4)
    assert breaker.admit(12.0)
    breaker.record(12.0, failed=True)  # 1 of 2 trials failed: 50 % can no longer close it
    assert breaker.state == "open"
    assert breaker.open_until == 22.0
    assert breaker.stats.opened == 2


def test_a_slow_call_counts_as_failed() -> None:
    breaker = CircuitBreaker("payments", BreakerPolicy(window=3, minimum_calls=3, slow_call=1.0))
    for duration in (0.5, 1.5, 3.0):
        assert breaker.admit(0.0)
        breaker.record(0.0, failed=False, duration=duration)
    assert breaker.state == "open"
    assert breaker.stats.slow == 2
    assert breaker.stats.succeeded == 1


def test_a_released_call_counts_neither_way_and_frees_its_trial() -> None:
    breaker = CircuitBreaker("payments", POLICY)
    for _ in range(10):
        assert breaker.admit(0.0)
        breaker.release()  # a declared domain error: an answer, not a failure
    assert breaker.state == "closed"
    assert breaker.failure_rate == 0.0
    failing(breaker, 4)
    assert breaker.admit(10.0)
    assert breaker.admit(10.0)
    breaker.release()
    assert breaker.admit(10.0)  # the released trial's place is free again


@pytest.mark.parametrize(
    ("fields", "says"),
    [
        ({"failure_rate": 0.0}, "failure_rate must be in (0, 1]"),
        ({"window": 10, "minimum_calls": 20}, "minimum_calls <= window"),
        ({"trials": 0}, "trials >= 1"),
        ({"slow_call": 0.0}, "slow_call must be a positive"),
    ],
)
def test_a_bad_policy_says_what_is_wrong(fields: dict[str, float], says: str) -> None:
    with pytest.raises(ConfigurationError, match="BreakerPolicy") as caught:
        BreakerPolicy(**fields)  # type: ignore[arg-type]
    assert says in str(caught.value)


def test_the_bulkhead_hands_a_freed_slot_to_the_first_waiter() -> None:
    bulkhead: Bulkhead[str] = Bulkhead(2)
    assert bulkhead.take()
    assert bulkhead.take()
    assert not bulkhead.take()
    bulkhead.wait("a")
    bulkhead.wait("b")
    bulkhead.withdraw("a")  # gave up
    assert bulkhead.give() == "b"  # its slot passes on, still counted outstanding
    assert bulkhead.outstanding == 2
    assert bulkhead.give() is None
    assert bulkhead.give() is None
    assert bulkhead.outstanding == 0
    assert bulkhead.take()
    with pytest.raises(ConfigurationError, match="at least 1"):
        Bulkhead(0)


def test_a_bulkhead_limited_under_the_calls_out_frees_no_slot_until_enough_are_back() -> None:
    bulkhead: Bulkhead[str] = Bulkhead(None)
    for _ in range(3):
        assert bulkhead.take()
    bulkhead.limit_to(2)
    assert (bulkhead.outstanding, bulkhead.free) == (3, -1)
    assert not bulkhead.take()
    bulkhead.give()
    assert not bulkhead.take()  # two are still out
    bulkhead.give()
    assert bulkhead.take()


def test_the_guards_fast_path_counts_its_successes_and_hands_slots_to_waiters() -> None:
    guard = Guard("payments", CallPolicy(breaker=BreakerPolicy(window=4, minimum_calls=4),
                                         max_outstanding=2))  # fmt: skip
    breaker = guard.breaker
    assert breaker is not None
    clock = iter(range(10_000)).__next__
    for _ in range(1000):  # the first four fill the window; the rest take the fast path
        assert guard.enter(clock, guard.policy)
        assert guard.leave(clock, False, 0.0) is None
    guard.sync()
    assert breaker.stats.succeeded == 1000
    assert guard.free == 2

    assert guard.enter(clock, guard.policy)
    assert guard.enter(clock, guard.policy)
    assert not guard.enter(clock, guard.policy)  # full: this one waits
    guard.wait("waiter")
    assert not guard.quiet  # a success must look for the waiter now
    assert guard.leave(clock, False, 0.0) == "waiter"  # its slot passes on
    assert guard.leave(clock, False, 0.0) is None
    assert guard.leave(clock, True, 0.0) is None  # the waiter's call failed
    assert guard.free == 2
    assert breaker.stats.succeeded == 1002
    assert breaker.stats.failed == 1
    assert not guard.quiet  # a failure in the window: every outcome is recorded again
