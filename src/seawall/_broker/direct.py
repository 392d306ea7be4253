"""Direct requests: handed to a group's live members from memory, never appended to a log.

A channel declared with ``ChannelSpec(requests="direct")`` lets a request (a
message with a reply channel and a deadline) skip its logs: its caller waits
with a deadline and asks again if no answer comes, and the responder's reply
cache answers a repeat, so the request need not survive the broker. The broker
keeps one :class:`DirectQueue` per group that has a live member, and offers
each such request to every one of them (publish-subscribe, as for a log). This
module is the sans-IO part, fed ``now``:

* A member takes a waiting direct request before the next entry of the logs,
  within the same credit (the engine spends a credit of the group's for it), so
  ``prefetch`` bounds both together. A delivery of one is a
  :class:`~seawall._broker.log.Taken` whose partition is :data:`DIRECT` and whose
  offset is the request's number in its queue.
* An ack forgets it; a nack holds it until its not-before time, then any
  member of the group may take it, one attempt more.
* A member that leaves puts what it held back at the head of the queue, for
  the others; when the group's last member leaves, the queue goes with it and
  the callers of what it held time out.
* A queue holds at most ``bound`` requests (waiting, held and held back
  together); one more is refused, and the engine raises
  :class:`~seawall.ChannelFull` to its publisher.

There is no order between direct requests, nor between them and the logs.
"""

from __future__ import annotations

import heapq
import itertools
from collections import deque
from typing import Generic, TypeVar

from .log import Taken

__all__ = ["DIRECT", "DirectQueue"]

T = TypeVar("T")

DIRECT = -1
"""The partition a :class:`~seawall._broker.log.Taken` names for a direct request."""


class DirectQueue(Generic[T]):
    """One group's direct requests: waiting, held by a member, or held back after a nack."""

    def __init__(self, bound: int) -> None:
        self.bound = bound
        self._numbers = itertools.count()
        self._ready: deque[tuple[int, int, T]] = deque()  # (number, attempts so far, entry)
        self._held: dict[int, tuple[int, int, T]] = {}  # number -> (member, attempt, entry)
        self._retry: list[tuple[float, int, int, T]] = []  # (not before, number, attempt, entry)

    def __len__(self) -> int:
        return len(self._ready) + len(self._held) + len(self._retry)

    def offer(self, entry: T) -> bool:
        """Queue a request; False (and nothing queued) when the queue is at its bound."""
        if len(self) >= self.bound:
            return False
        self._ready.append((next(self._numbers), 0, entry))
        return True

    def due(self, now: float) -> bool:
        """Whether a request may be taken at ``now``."""
        return bool(self._ready) or (bool(self._retry) and self._retry[0][0] <= now)

    def take(self, member: int, now: float) -> Taken[T] | None:
        """The next request for ``member``: one held back and due first, else the oldest."""
        if self._retry and self._retry[0][0] <= now:
            _, number, attempts, entry = heapq.heappop(self._retry)
        elif self._ready:
            number, attempts, entry = self._ready.popleft()
        else:
            return None
        self._held[number] = (member, attempts + 1, entry)
        return Taken(DIRECT, number, attempts + 1, entry)

    def ack(self, member: int, number: int) -> bool:
        """Done with it; False if ``member`` does not hold it."""
        held = self._held.get(number)
        if held is None or held[0] != member:
            return False
        del self._held[number]
        return True

    def nack(self, member: int, number: int, not_before: float) -> bool:
        """Hold it back until ``not_before``; False if ``member`` does not hold it."""
        held = self._held.get(number)
        if held is None or held[0] != member:
            return False
        del self._held[number]
        heapq.heappush(self._retry, (not_before, number, held[1], held[2]))
        return True

    def leave(self, member: int) -> None:
        """``member`` left: what it held goes back to the head, for the others."""
        mine = sorted(n for n, held in self._held.items() if held[0] == member)
        for number in reversed(mine):
            _, attempt, entry = self._held.pop(number)
            self._ready.appendleft((number, attempt, entry))

    def next_retry(self) -> float | None:
        """When the earliest held-back request falls due, or None."""
        return self._retry[0][0] if self._retry else None
