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
from .breaker import CircuitBreaker
from .bulkhead import Bulkhead
from .policy import CallPolicy, Policies

__all__ = ["Guard", "Guards"]


class Guard(Bulkhead[Any]):
    """One target's breaker (optional), bulkhead (without a limit if the policy sets none)
    and policy. The guard is its target's bulkhead (``free``, ``waiters``, ``stats``: see
    :class:`~seawall.resilience.Bulkhead`), so that the fast path reads one object.

    The fast path: a call the breaker has nothing to say about costs a few integer
    operations, no call and no clock read, by two fields the guard keeps up to date
    after every change (change the breaker and the bulkhead's waiters only through the
    guard, or call :meth:`sync` after):

    - ``ready``: no breaker, or a closed one that does not time calls: while
      ``free > 0`` a call is admitted by ``free -= 1`` alone, started
      at 0.0 (what :meth:`enter` does then);
    - ``quiet``: while it is not 0 (ready, the breaker's whole window successes, nobody
      waiting for a slot), a success is told by ``quiet -= 1`` and
      ``free += 1`` alone (what :meth:`leave` does then). ``quiet`` counts down
      a run of at most 256 successes, small integers that cost no allocation; the guard
      adds the run to the breaker's ``stats.succeeded`` when it ends (at the latest
      after 256 calls, or at :meth:`sync`), so that count is behind by less than a run.

    Anything else goes through :meth:`enter` and :meth:`leave`.
    """

    __slots__ = ("_run", "breaker", "policy", "quiet", "ready", "target", "timed")

    def __init__(self, target: str, policy: CallPolicy) -> None:
        super().__init__(policy.max_outstanding)
        self.target = target
        self.policy = policy
        self.breaker = None if policy.breaker is None else CircuitBreaker(target, policy.breaker)
        self.timed = False
        """Whether a call's duration matters (slow calls count as failures): read the
        clock at its start only then."""
        self.ready = True
        self.quiet = self._run = 0  # ``quiet`` at the start of the run
        self.sync()

    def sync(self) -> None:
        """Bring the fast-path fields up to date with the breaker and the bulkhead (and
        the breaker's count of successes with the fast path's)."""
        breaker = self.breaker
        if breaker is None:
            self.timed = False
            self.ready = True
            quiet = not self.waiters
        else:
            breaker.stats.succeeded += self._run - self.quiet
            self.timed = breaker.policy.slow_call is not None
            self.ready = breaker.state == "closed" and not self.timed
            quiet = self.ready and breaker.quiet and not self.waiters
        self.quiet = self._run = _RUN if quiet else 0

    def enter(self, clock: Callable[[], float], policy: CallPolicy) -> bool:
        """Admit a call now: True with a bulkhead slot, False if it is to wait for one
        (then :meth:`wait`).

        Raises :class:`~seawall.CircuitOpen` if the breaker refuses it, and
        :class:`~seawall.Overloaded` if the bulkhead is full and ``policy`` sheds.
        ``clock`` (the injectable clock's ``time``) is read only when the breaker is
        not closed: a closed breaker admits without asking the time.
        """
        breaker = self.breaker
        if breaker is not None and breaker.state != "closed":
            self._admit(clock)
        if self.free > 0:
            self.free -= 1
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
        self.shed()
        if self.breaker is not None:
            self.breaker.release()
        raise Overloaded(self.target, self.limit or 0, retry_after=_hint(policy))

    def wait(self, waiter: Any) -> None:
        """Queue ``waiter`` for a slot (after :meth:`enter` said wait)."""
        super().wait(waiter)
        self.sync()

    def withdraw(self, waiter: Any) -> None:
        """``waiter`` gave up its place in the queue."""
        super().withdraw(waiter)
        self.sync()

    def leave(self, clock: Callable[[], float], failed: bool | None, started: float) -> Any:
        """A call admitted at ``started`` is over, ``failed`` or not (None: a domain error,
        no verdict); returns the bulkhead waiter to hand the slot to, if any. ``clock`` is
        read only when the outcome can change the breaker."""
        if failed is False and self.quiet:
            self.quiet -= 1  # a success changes nothing: the fast path
            self.free += 1
            return None
        self._verdict(clock, failed, started)
        return self.pass_slot()

    def pass_slot(self) -> Any:
        """Free a slot without a verdict; returns the waiter it passes to, if any."""
        waiter = self.give()
        if waiter is None and not self.quiet:
            self.sync()
        return waiter

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
        """Make the breaker or bulkhead limit a call's policy asks for, if the target has none."""
        if self.breaker is None and policy.breaker is not None:
            self._run = self.quiet  # the successes before it are not the new breaker's
            self.breaker = CircuitBreaker(self.target, policy.breaker)
            self.sync()
        if self.limit is None and policy.max_outstanding is not None:
            self.limit_to(policy.max_outstanding)


class Guards:
    """The guards of one process, by target; see the module docstring."""

    __slots__ = ("by_target", "policies")

    def __init__(self, policies: Policies) -> None:
        self.policies = policies
        self.by_target: dict[str, Guard] = {}
        """Every guard made, by target (read it; :meth:`guard` makes one)."""

    def guard(self, target: str, call: CallPolicy | None = None) -> tuple[Guard, CallPolicy]:
        """The target's guard, and the policy of this call (``call`` on the target's)."""
        guard = self.by_target.get(target)
        if guard is None:
            base = self.policies.for_target(target)
            guard = Guard(target, base if call is None else call.over(base))
            self.by_target[target] = guard
        if call is None:
            return guard, guard.policy
        policy = call.over(guard.policy)
        guard.adopt(policy)
        return guard, policy

    def enter(self, target: str, clock: Callable[[], float]) -> Guard | None:
        """Admit a call to ``target`` under the target's own policy and return its guard:
        :meth:`guard` and :meth:`Guard.enter` in one call. None: the bulkhead is full and
        the policy waits; the caller queues for a slot (``get(target).wait(...)``). The
        fast path of :class:`Guard` does the same in the common case without the call."""
        guard = self.by_target.get(target) or self.guard(target)[0]
        return guard if guard.enter(clock, guard.policy) else None

    def get(self, target: str) -> Guard | None:
        """The target's guard if it was ever called (or declared a dependency)."""
        return self.by_target.get(target)

    def __iter__(self) -> Any:
        return iter(self.by_target.values())

    def breakers(self) -> list[CircuitBreaker]:
        """Every target's breaker, by target name (the registry heartbeat and health show them)."""
        guards = sorted(self.by_target.values(), key=_target)
        return [guard.breaker for guard in guards if guard.breaker is not None]

    def blocked(self, targets: tuple[str, ...], now: float) -> float:
        """Seconds until every breaker of ``targets`` admits calls again (0.0: none blocks)."""
        wait = 0.0
        for target in targets:
            guard = self.by_target.get(target)
            breaker = None if guard is None else guard.breaker
            if breaker is not None and breaker.blocked(now):
                wait = max(wait, breaker.retry_after(now))
        return wait


_RUN = 256
"""Successes a quiet guard takes before it counts them (the largest cached small int)."""


def _hint(policy: CallPolicy) -> float:
    """Seconds an overloaded caller is told to wait before it tries again."""
    return 1.0 if policy.timeout is None else min(policy.timeout, 1.0)


def _target(guard: Guard) -> str:
    return guard.target
