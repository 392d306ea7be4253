"""The bulkhead: at most ``limit`` calls outstanding to one target.

Sans-IO: :meth:`Bulkhead.enter` says whether a call may go now; a call that
may not either leaves (the policy sheds it with :class:`~seawall.Overloaded`)
or queues a waiter of the caller's choosing (an asyncio future, in the
runtime) with :meth:`Bulkhead.wait`. :meth:`Bulkhead.leave` frees the slot
and returns the waiter that takes it over, first come first served, for the
caller to wake. A waiter that gives up (its deadline passed) is withdrawn
with :meth:`Bulkhead.withdraw`.
"""

from __future__ import annotations

import contextlib
from collections import deque
from dataclasses import dataclass
from typing import Generic, TypeVar

from .._exceptions import ConfigurationError

__all__ = ["Bulkhead", "BulkheadStats"]

W = TypeVar("W")


@dataclass(slots=True)
class BulkheadStats:
    """Counters of one bulkhead."""

    waited: int = 0
    """Calls that found it full and queued."""
    shed: int = 0
    """Calls that found it full and were refused."""


class Bulkhead(Generic[W]):
    """Counts outstanding calls against a limit; queues waiters for freed slots."""

    __slots__ = ("limit", "outstanding", "stats", "waiters")

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ConfigurationError(f"max_outstanding must be at least 1, got {limit}")
        self.limit = limit
        self.outstanding = 0
        self.stats = BulkheadStats()
        self.waiters: deque[W] = deque()
        """Callers queued for a slot, first come first served (read; change by the methods)."""

    def enter(self) -> bool:
        """Take a slot if one is free (and nobody queued before); False if full."""
        if self.outstanding < self.limit and not self.waiters:
            self.outstanding += 1
            return True
        return False

    def shed(self) -> None:
        """Count a call refused because it was full."""
        self.stats.shed += 1

    def wait(self, waiter: W) -> None:
        """Queue ``waiter`` for the next free slot."""
        self.stats.waited += 1
        self.waiters.append(waiter)

    def withdraw(self, waiter: W) -> None:
        """``waiter`` no longer wants a slot (it may have been handed one: then it leaves)."""
        with contextlib.suppress(ValueError):
            self.waiters.remove(waiter)

    def leave(self) -> W | None:
        """Free a slot; the waiter it passes to (still counted outstanding), if any."""
        if self.waiters:
            return self.waiters.popleft()
        self.outstanding -= 1
        return None

    @property
    def waiting(self) -> int:
        """Calls queued for a slot."""
        return len(self.waiters)
