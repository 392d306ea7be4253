"""The bulkhead: at most ``limit`` calls outstanding to one target.

Sans-IO, and one integer on the common path: ``free`` is the number of slots
nobody holds. :meth:`Bulkhead.take` takes one if there is one; a call that
finds none either leaves (the policy sheds it with :class:`~seawall.Overloaded`)
or queues a waiter of the caller's choosing (an asyncio future, in the
runtime) with :meth:`Bulkhead.wait`. :meth:`Bulkhead.give` frees the slot, or
returns the waiter that takes it over, first come first served, for the caller
to wake. A waiter that gives up (its deadline passed) is withdrawn with
:meth:`Bulkhead.withdraw`.

A slot freed while somebody waits passes to the waiter and is never free, so
``free > 0`` means nobody waits: a caller may take a slot with
``bulkhead.free -= 1`` after seeing ``free > 0``, and give it back with
``free += 1`` when :attr:`Bulkhead.waiters` is empty (what :meth:`take` and
:meth:`give` do). Nothing is allocated per call; waiters exist only for calls
that must wait. Without a limit (``None``) ``free`` starts at a number no
process reaches.
"""

from __future__ import annotations

import contextlib
import sys
from collections import deque
from dataclasses import dataclass
from typing import Generic, TypeVar

from .._exceptions import ConfigurationError

__all__ = ["Bulkhead", "BulkheadStats"]

W = TypeVar("W")

UNLIMITED = sys.maxsize
"""``free`` of a bulkhead without a limit."""


@dataclass(slots=True)
class BulkheadStats:
    """Counters of one bulkhead."""

    waited: int = 0
    """Calls that found it full and queued."""
    shed: int = 0
    """Calls that found it full and were refused."""


class Bulkhead(Generic[W]):
    """Counts free slots against a limit; queues waiters for freed slots."""

    __slots__ = ("free", "limit", "stats", "waiters")

    def __init__(self, limit: int | None) -> None:
        if limit is not None and limit < 1:
            raise ConfigurationError(f"max_outstanding must be at least 1, got {limit}")
        self.limit = limit
        """Calls outstanding at most (None: no limit)."""
        self.free = UNLIMITED if limit is None else limit
        """Slots nobody holds (see the module docstring); below 0 after :meth:`limit_to`
        put a limit under the calls already out."""
        self.stats = BulkheadStats()
        self.waiters: deque[W] = deque()
        """Callers queued for a slot, first come first served (read; change by the methods)."""

    def take(self) -> bool:
        """Take a slot if one is free; False if full (or others queued first)."""
        if self.free > 0:
            self.free -= 1
            return True
        return False

    def shed(self) -> None:
        """Count a call refused because it was full."""
        self.stats.shed += 1

    def wait(self, waiter: W) -> None:
        """Queue ``waiter`` for the next free slot (after :meth:`take` said no)."""
        self.stats.waited += 1
        self.waiters.append(waiter)

    def withdraw(self, waiter: W) -> None:
        """``waiter`` no longer wants a slot (it may have been handed one: then it leaves)."""
        with contextlib.suppress(ValueError):
            self.waiters.remove(waiter)

    def give(self) -> W | None:
        """Free a slot; the waiter it passes to (still counted outstanding), if any."""
        if self.waiters:
            return self.waiters.popleft()
        self.free += 1
        return None

    def limit_to(self, limit: int) -> None:
        """Put a limit on a bulkhead that had none; the calls out now hold slots of it
        (more of them than ``limit``: no slot is free until enough are back)."""
        if limit < 1:
            raise ConfigurationError(f"max_outstanding must be at least 1, got {limit}")
        self.free = limit - self.outstanding
        self.limit = limit

    @property
    def outstanding(self) -> int:
        """Calls holding a slot."""
        return (UNLIMITED if self.limit is None else self.limit) - self.free

    @property
    def waiting(self) -> int:
        """Calls queued for a slot."""
        return len(self.waiters)
