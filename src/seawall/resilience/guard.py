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

from typing import Any

from .breaker import CircuitBreaker
from .bulkhead import Bulkhead
from .policy import CallPolicy, Policies

__all__ = ["Guard", "Guards"]


class Guard:
    """One target's breaker (optional), bulkhead (optional) and policy."""

    __slots__ = ("breaker", "bulkhead", "policy", "target")

    def __init__(self, target: str, policy: CallPolicy) -> None:
        self.target = target
        self.policy = policy
        self.breaker = None if policy.breaker is None else CircuitBreaker(target, policy.breaker)
        self.bulkhead: Bulkhead[Any] | None = (
            None if policy.max_outstanding is None else Bulkhead(policy.max_outstanding)
        )

    def adopt(self, policy: CallPolicy) -> None:
        """Make the breaker or bulkhead a call's policy asks for, if the target has none."""
        if self.breaker is None and policy.breaker is not None:
            self.breaker = CircuitBreaker(self.target, policy.breaker)
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

    def known(self, target: str) -> Guard | None:
        """The target's guard if it was ever called."""
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


def _target(guard: Guard) -> str:
    return guard.target
