"""Guards: the breaker and bulkhead state of each target a process calls.

:class:`Guards` keeps one :class:`Guard` per target channel, made the first
time the target is called, from the target's policy (:class:`Policies`). A
per-call policy changes how that one call waits, retries and what counts as
a domain error; the breaker and the bulkhead are the target's, shared by
every call to it (a call that brings a breaker policy to a target without one
makes the target's breaker with it).

Sans-IO: the runtime asks and reports with the time of its clock.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NoReturn

from .._exceptions import CircuitOpen, Overloaded
from .breaker import BreakerStats, CircuitBreaker
from .bulkhead import Bulkhead
from .policy import CallPolicy, Policies

__all__ = ["Guard", "Guards"]


class Guard:
    """One target's breaker (optional), bulkhead (optional) and policy.

    Two flags, kept by the guard after every call that can change the breaker, let a
    call skip the breaker when it has nothing to say: ``closed`` (no breaker, or a
    closed one: it admits without the clock) and ``quiet`` (no breaker, or a closed one
    whose whole window is successes and that does not time calls: a success changes
    nothing but a counter). Change the breaker only through the guard, or call
    :meth:`sync` after.
    """

    __slots__ = ("_counts", "breaker", "bulkhead", "closed", "policy", "quiet", "target", "timed")

    def __init__(self, target: str, policy: CallPolicy) -> None:
        self.target = target
        self.policy = policy
        self.breaker = None if policy.breaker is None else CircuitBreaker(target, policy.breaker)
        self.bulkhead: Bulkhead[Any] | None = (
            None if policy.max_outstanding is None else Bulkhead(policy.max_outstanding)
        )
        self.timed = False
        """Whether a call's duration matters (slow calls count as failures): read the
        clock at its start only then."""
        self.closed = self.quiet = True
        self._counts = BreakerStats()  # the breaker's (a spare one without a breaker)
        self.sync()

    def sync(self) -> None:
        """Bring the fast-path flags up to date with the breaker."""
        breaker = self.breaker
        if breaker is None:
            self.timed = False
            self.closed = self.quiet = True
            return
        self._counts = breaker.stats
        self.timed = breaker.policy.slow_call is not None
        self.closed = breaker.state == "closed"
        self.quiet = self.closed and breaker.quiet and not self.timed

    def enter(self, clock: Callable[[], float], policy: CallPolicy) -> bool:
        """Admit a call now: True with a bulkhead slot, False if it is to wait for one.

        Raises :class:`~seawall.CircuitOpen` if the breaker refuses it, and
        :class:`~seawall.Overloaded` if the bulkhead is full and ``policy`` sheds.
        ``clock`` (the injectable clock's ``time``) is read only when the breaker is
        not closed: a closed breaker admits without asking the time.
        """
        if not self.closed:
            self._admit(clock)
        bulkhead = self.bulkhead
        if bulkhead is None:
            return True
        if bulkhead.outstanding < bulkhead.limit and not bulkhead.waiters:
            bulkhead.outstanding += 1
            return True
        if policy.overflow == "shed":
            self._shed(policy)
        return False

    def _admit(self, clock: Callable[[], float]) -> None:
        """Ask a breaker that is not closed (raises :class:`~seawall.CircuitOpen`)."""
        breaker = self.breaker
        assert breaker is not None
        now = clock()
        admitted = breaker.admit(now)
        self.sync()
        if not admitted:
            raise CircuitOpen(self.target, breaker.retry_after(now))

    def _shed(self, policy: CallPolicy) -> NoReturn:
        """Refuse a call the full bulkhead does not queue (raises :class:`~seawall.Overloaded`)."""
        bulkhead = self.bulkhead
        assert bulkhead is not None
        bulkhead.shed()
        if self.breaker is not None:
            self.breaker.release()
        raise Overloaded(self.target, bulkhead.limit, retry_after=_hint(policy))

    def leave(self, clock: Callable[[], float], failed: bool | None, started: float) -> Any:
        """A call admitted at ``started`` is over, ``failed`` or not (None: a domain error,
        no verdict); returns the bulkhead waiter to hand the slot to, if any. ``clock`` is
        read only when the outcome can change the breaker."""
        if failed is False and self.quiet:
            self._counts.succeeded += 1  # a success changes nothing: the fast path
        else:
            self._verdict(clock, failed, started)
        bulkhead = self.bulkhead
        if bulkhead is None:
            return None
        if not bulkhead.waiters:
            bulkhead.outstanding -= 1
            return None
        return bulkhead.leave()

    def _verdict(self, clock: Callable[[], float], failed: bool | None, started: float) -> None:
        """Tell the breaker an outcome that may change it (or a domain error's lack of one)."""
        breaker = self.breaker
        if breaker is None:
            return
        if failed is None:
            breaker.release()
            return
        now = clock()
        breaker.record(now, failed, now - started)
        self.sync()

    def adopt(self, policy: CallPolicy) -> None:
        """Make the breaker or bulkhead a call's policy asks for, if the target has none."""
        if self.breaker is None and policy.breaker is not None:
            self.breaker = CircuitBreaker(self.target, policy.breaker)
            self.sync()
        if self.bulkhead is None and policy.max_outstanding is not None:
            self.bulkhead = Bulkhead(policy.max_outstanding)


class Guards:
    """The guards of one process, by target; see the module docstring."""

    __slots__ = ("_guards", "policies")

    def __init__(self, policies: Policies) -> None:
        self.policies = policies
        self._guards: dict[str, Guard] = {}

    def guard(self, target: str, call: CallPolicy | None = None) -> tuple[Guard, CallPolicy]:
        """The target's guard, and the policy of this call (``call`` on the target's)."""
        guard = self._guards.get(target)
        if guard is None:
            base = self.policies.for_target(target)
            guard = self._guards[target] = Guard(target, base if call is None else call.over(base))
        if call is None:
            return guard, guard.policy
        policy = call.over(guard.policy)
        guard.adopt(policy)
        return guard, policy

    def enter(self, target: str, clock: Callable[[], float]) -> Guard | None:
        """Admit a call to ``target`` under the target's own policy and return its guard:
        :meth:`guard` and :meth:`Guard.enter` in one call, for the common case. None: the
        bulkhead is full and the policy waits; the caller queues for a slot
        (``get(target).bulkhead.wait(...)``)."""
        try:
            guard = self._guards[target]
        except KeyError:
            guard = self.guard(target)[0]
        if not guard.closed:
            guard._admit(clock)
        bulkhead = guard.bulkhead
        if bulkhead is not None:
            if bulkhead.outstanding < bulkhead.limit and not bulkhead.waiters:
                bulkhead.outstanding += 1
            elif guard.policy.overflow == "shed":
                guard._shed(guard.policy)
            else:
                return None
        return guard

    def get(self, target: str) -> Guard | None:
        """The target's guard if it was ever called (or declared a dependency)."""
        return self._guards.get(target)

    def __iter__(self) -> Any:
        return iter(self._guards.values())

    def breakers(self) -> list[CircuitBreaker]:
        """Every target's breaker, by target name (the registry heartbeat and health show them)."""
        guards = sorted(self._guards.values(), key=_target)
        return [guard.breaker for guard in guards if guard.breaker is not None]

    def blocked(self, targets: tuple[str, ...], now: float) -> float:
        """Seconds until every breaker of ``targets`` admits calls again (0.0: none blocks)."""
        wait = 0.0
        for target in targets:
            guard = self._guards.get(target)
            breaker = None if guard is None else guard.breaker
            if breaker is not None and breaker.blocked(now):
                wait = max(wait, breaker.retry_after(now))
        return wait


def _hint(policy: CallPolicy) -> float:
    """Seconds an overloaded caller is told to wait before it tries again."""
    return 1.0 if policy.timeout is None else min(policy.timeout, 1.0)


def _target(guard: Guard) -> str:
    return guard.target
