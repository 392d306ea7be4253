"""Connection state of the wire protocol: heartbeats and the request pipeline.

Sans-IO like :mod:`seawall._wire.protocol`, whose docstring is the protocol's spec:
:class:`Heartbeat` says when to ping a quiet peer and when to give it up for
dead, :class:`Pipeline` tracks the client's requests that await an answer.
Both are fed ``now`` and frames; the asyncio client and server wrap them.
"""

from __future__ import annotations

from typing import Any, Generic, TypeVar

from .._exceptions import ConfigurationError, ProtocolError
from .protocol import Error, Ok

__all__ = ["Heartbeat", "Pipeline"]

T = TypeVar("T")
_MISSING: Any = object()


class Heartbeat:
    """When to ping a quiet peer and when to give it up for dead; fed ``now``."""

    def __init__(self, interval: float, now: float, *, misses: int = 3) -> None:
        if not interval > 0 or misses < 1:
            raise ConfigurationError(
                f"heartbeat needs interval > 0 and misses >= 1, got {interval} and {misses}"
            )
        self.interval = interval
        self.misses = misses
        self._heard = now
        self._pinged = now

    def received(self, now: float) -> None:
        """Any frame arrived from the peer at ``now``."""
        self._heard = max(self._heard, now)

    def pinged(self, now: float) -> None:
        """A Ping was sent at ``now``."""
        self._pinged = max(self._pinged, now)

    def due(self, now: float) -> bool:
        """Whether to send a Ping: a whole interval quiet since the last frame or Ping."""
        return now - max(self._heard, self._pinged) >= self.interval

    def dead(self, now: float) -> bool:
        """Whether the peer missed ``misses`` intervals: close the connection."""
        return now - self._heard >= self.misses * self.interval

    def wake_at(self) -> float:
        """The next time :meth:`due` or :meth:`dead` can change, to sleep until."""
        ping = max(self._heard, self._pinged) + self.interval
        return min(ping, self._heard + self.misses * self.interval)


class Pipeline(Generic[T]):
    """The client's table of requests sent and not yet answered, each with its waiter.

    The waiter is whatever the caller needs to hand the answer on (a future);
    the table only keeps it with its seq.
    """

    def __init__(self, *, limit: int = 1024) -> None:
        if limit < 1:
            raise ConfigurationError(f"pipeline limit must be at least 1, got {limit}")
        self.limit = limit
        self._next = 0
        self._waiting: dict[int, T] = {}

    def __len__(self) -> int:
        return len(self._waiting)

    @property
    def full(self) -> bool:
        """Whether ``limit`` requests are unanswered; wait for one before sending."""
        return len(self._waiting) >= self.limit

    def next_seq(self) -> int:
        """A fresh sequence number for the next request."""
        seq = self._next
        self._next += 1
        return seq

    def expect(self, seq: int, waiter: T) -> None:
        """Record that request ``seq`` was sent and awaits an answer, for ``waiter``."""
        if seq in self._waiting:
            raise ProtocolError(
                "bad-request", f"request seq {seq} is already waiting; take seqs from next_seq()"
            )
        if self.full:
            raise ProtocolError(
                "bad-request",
                f"{self.limit} requests already wait for answers; wait before sending more",
            )
        self._waiting[seq] = waiter

    def resolve(self, response: Ok | Error) -> T:
        """The waiter of the request ``response`` answers, no longer waiting.

        An answer nobody waits for, or a connection-level Error, raises.
        """
        if isinstance(response, Error) and response.seq is None:
            raise ProtocolError(
                response.code,
                f"the peer ended the connection ({response.code}): {response.message}",
            )
        return self.take(response.seq, type(response).__name__)

    def take(self, seq: int | None, what: str = "Ok") -> T:
        """The waiter of request ``seq``, answered by a ``what`` frame; unknown raises."""
        waiter = self._waiting.pop(seq, _MISSING)  # type: ignore[arg-type]
        if waiter is _MISSING:
            raise ProtocolError(
                "bad-request",
                f"{what} answers seq {seq}, which no request "
                "waits for; the peer is out of step, close the connection",
            )
        return waiter

    def abandon(self) -> list[T]:
        """Forget every waiting request (the connection is gone); their waiters, by seq."""
        waiters = [self._waiting[seq] for seq in sorted(self._waiting)]
        self._waiting.clear()
        return waiters
