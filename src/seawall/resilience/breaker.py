"""The circuit breaker: a sans-IO state machine fed ``now``.

Closed, it counts the outcome of the last ``window`` calls; once at least
``minimum_calls`` are counted and the share of failures (slow calls included)
reaches ``failure_rate``, it opens. Open, it refuses every call for
``open_for`` seconds; then it is half-open and lets ``trials`` calls through.
When they are all back, it closes if their failure share stays under
``failure_rate`` and opens again otherwise. The defaults are resilience4j's
(50 % over 100 calls, open 60 s, 10 trial calls).

The caller asks :meth:`CircuitBreaker.admit` before a call and reports with
:meth:`CircuitBreaker.record` after it (or :meth:`CircuitBreaker.release` for a
call whose outcome says nothing about the target: a declared domain error).
Nothing here reads a clock or sleeps; the runtime feeds it the time of its
injectable clock, so the test system drives it in virtual time.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from .._exceptions import ConfigurationError

__all__ = ["BreakerPolicy", "BreakerStats", "CircuitBreaker", "State"]

State = Literal["closed", "open", "half-open"]


@dataclass(frozen=True, kw_only=True, slots=True)
class BreakerPolicy:
    """When a breaker opens, for how long, and how it tries the target again."""

    failure_rate: float = 0.5
    """Share of failed calls in the window (0 < rate <= 1) at which it opens."""
    window: int = 100
    """How many of the latest calls are counted."""
    minimum_calls: int = 100
    """Calls counted before the rate means anything (at most ``window``)."""
    open_for: float = 60.0
    """Seconds it stays open before it lets trial calls through."""
    trials: int = 10
    """Calls let through while half-open; their outcome closes or re-opens it."""
    slow_call: float | None = None
    """A call that took longer than this many seconds counts as failed (None: never)."""

    def __post_init__(self) -> None:
        problems = []
        if not 0 < self.failure_rate <= 1:
            problems.append(f"failure_rate must be in (0, 1], got {self.failure_rate}")
        if self.window < 1 or not 1 <= self.minimum_calls <= self.window:
            problems.append(
                f"need window >= 1 and 1 <= minimum_calls <= window, got window={self.window}, "
                f"minimum_calls={self.minimum_calls}"
            )
        if self.open_for < 0 or self.trials < 1:
            problems.append(
                f"need open_for >= 0 and trials >= 1, got {self.open_for} and {self.trials}"
            )
        if self.slow_call is not None and self.slow_call <= 0:
            problems.append(f"slow_call must be a positive number of seconds, got {self.slow_call}")
        if problems:
            raise ConfigurationError("BreakerPolicy: " + "; ".join(problems))


@dataclass(slots=True)
class BreakerStats:
    """Counters of one breaker (metrics read them; counting costs an increment)."""

    succeeded: int = 0
    """Successful calls (a guard adds those of its fast path in runs; see :class:`Guard`)."""
    failed: int = 0
    """Failed calls, slow ones included."""
    slow: int = 0
    ignored: int = 0
    """Calls released without an outcome (declared domain errors)."""
    rejected: int = 0
    """Calls refused while open (or half-open with every trial out)."""
    opened: int = 0
    """Times it opened."""


class CircuitBreaker:
    """One target's breaker; see the module docstring."""

    __slots__ = (
        "_failures",
        "_full",
        "_index",
        "_outcomes",
        "_slow",
        "_trial_failures",
        "_trials_back",
        "_trials_out",
        "_tripped_at",
        "open_until",
        "policy",
        "quiet",
        "state",
        "stats",
        "target",
    )

    def __init__(self, target: str, policy: BreakerPolicy | None = None) -> None:
        self.target = target
        self.policy = policy or BreakerPolicy()
        self.state: State = "closed"
        self.open_until = 0.0
        """While open: when it turns half-open (epoch seconds)."""
        self.stats = BreakerStats()
        self._outcomes: list[bool] = []  # ring of the latest calls, True = failed
        self._full = False  # the ring holds ``window`` calls
        self.quiet = False
        """Closed with a full window of successes: a success changes nothing (the fast path)."""
        self._slow = self.policy.slow_call
        self._index = 0
        self._failures = 0
        self._trials_out = 0
        self._trials_back = 0
        self._trial_failures = 0
        self._tripped_at = 0.0  # the failure share that opened it last

    # -- asking --------------------------------------------------------------------------
    def admit(self, now: float) -> bool:
        """Whether a call may go out now; a call admitted must be recorded or released."""
        if self.state == "closed":
            return True
        if self.state == "open":
            if now < self.open_until:
                self.stats.rejected += 1
                return False
            self._half_open()
        if self._trials_out < self.policy.trials:
            self._trials_out += 1
            return True
        self.stats.rejected += 1
        return False

    def retry_after(self, now: float) -> float:
        """Seconds until a call could be admitted (0 when one could be now)."""
        if self.state == "open":
            return max(0.0, self.open_until - now)
        if self.state == "half-open" and self._trials_out >= self.policy.trials:
            # every trial is out: the next chance comes when they are back, at the
            # latest after another open interval (their own deadlines end them)
            return min(self.policy.open_for, 1.0)
        return 0.0

    def blocked(self, now: float) -> bool:
        """Whether a call would be refused now, without counting one (for paused consumers)."""
        if self.state == "open":
            return now < self.open_until
        return self.state == "half-open" and self._trials_out >= self.policy.trials

    @property
    def failure_rate(self) -> float:
        """Share of failures among the calls counted now (0.0 with none); while open or
        half-open, the share that opened it."""
        if self.state != "closed":
            return self._tripped_at
        counted = len(self._outcomes)
        return self._failures / counted if counted else 0.0

    # -- telling -------------------------------------------------------------------------
    def record(self, now: float, failed: bool, duration: float = 0.0) -> None:
        """The outcome of an admitted call that took ``duration`` seconds."""
        slow = self._slow
        if slow is not None and duration > slow:
            self.stats.slow += 1
            failed = True
        elif not failed and self.quiet:
            # the common case: a success in a full window without failures changes nothing
            # (every entry is a success, so which one it replaces does not matter)
            self.stats.succeeded += 1
            return
        if failed:
            self.stats.failed += 1
        else:
            self.stats.succeeded += 1
        if self.state == "closed":
            self._count(failed, now)
        elif self.state == "half-open":
            self._trial(failed, now)
        # open: a call admitted before it opened came back late; the window restarts anyway

    def release(self) -> None:
        """An admitted call whose outcome says nothing about the target (a domain error)."""
        self.stats.ignored += 1
        if self.state == "half-open" and self._trials_out > self._trials_back:
            self._trials_out -= 1

    # -- transitions ---------------------------------------------------------------------
    def _count(self, failed: bool, now: float) -> None:
        outcomes, policy = self._outcomes, self.policy
        if not self._full:
            outcomes.append(failed)
            self._full = len(outcomes) == policy.window
        else:
            self._failures -= outcomes[self._index]
            outcomes[self._index] = failed
            self._index = (self._index + 1) % policy.window
        self._failures += failed
        if len(outcomes) >= policy.minimum_calls and (
            self._failures >= policy.failure_rate * len(outcomes)
        ):
            self._open(now)
        else:
            self.quiet = self._full and not self._failures

    def _trial(self, failed: bool, now: float) -> None:
        self._trials_back += 1
        self._trial_failures += failed
        trials = self.policy.trials
        if self._trial_failures >= self.policy.failure_rate * trials:
            self._open(now)  # it can no longer close: no need to wait for the rest
        elif self._trials_back >= trials:
            self._close()

    def _open(self, now: float) -> None:
        if self.state == "closed":
            self._tripped_at = self.failure_rate
        else:
            self._tripped_at = self._trial_failures / max(self._trials_back, 1)
        self.state = "open"
        self.open_until = now + self.policy.open_for
        self.stats.opened += 1
        self._reset_window()

    def _half_open(self) -> None:
        self.state = "half-open"
        self._trials_out = self._trials_back = self._trial_failures = 0

    def _close(self) -> None:
        self.state = "closed"
        self._reset_window()

    def _reset_window(self) -> None:
        self._outcomes = []
        self._full = self.quiet = False
        self._index = 0
        self._failures = 0
