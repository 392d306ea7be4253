"""Correlation of replies with the requests that asked for them.

A request is a message with ``replyto`` set to the requester's per-instance
inbox. Every reply carries ``causationid`` = the request's id, so one table
serves request/response (wait for one reply) and scatter-gather (collect
replies until a count or a deadline).
"""

from __future__ import annotations

import asyncio
import heapq
from typing import ClassVar

from .._messages.envelope import Message
from .._messages.payload import Document

__all__ = ["Done", "Failure", "ReplyTable"]


class Failure(Document, frozen=True):
    """The reply sent when a handler failed or the request's deadline passed."""

    type_name: ClassVar[str] = "seawall.Failure"
    error_type: str
    message: str
    service: str


class Done(Document, frozen=True):
    """The reply of a command handler that returned nothing."""

    type_name: ClassVar[str] = "seawall.Done"


class _Waiter:
    __slots__ = ("future", "replies", "want")

    def __init__(self, want: int | None) -> None:
        self.want = want
        self.replies: list[Message] = []
        self.future: asyncio.Future[list[Message]] = asyncio.get_running_loop().create_future()


class ReplyTable:
    """Requests waiting for replies, by request id.

    An entry whose deadline has passed is dropped the next time a request is
    made, so a reply nobody awaits, for a request nobody answers, cannot leak.
    """

    def __init__(self) -> None:
        self._waiting: dict[str, _Waiter] = {}
        self._expiry: list[tuple[float, str]] = []

    def __len__(self) -> int:
        return len(self._waiting)

    def expect(
        self, request_id: str, want: int | None, deadline: float | None, now: float
    ) -> asyncio.Future[list[Message]]:
        """Start waiting; the future resolves once ``want`` replies arrived (never if None)."""
        expiry = self._expiry
        if expiry and expiry[0][0] < now:  # _expire's test, here: no call on most requests
            self._expire(now)
        waiter = self._waiting[request_id] = _Waiter(want)
        if deadline is not None:
            heapq.heappush(expiry, (deadline, request_id))
            if len(expiry) > 2 * len(self._waiting) + 1024:
                self._compact()
        return waiter.future

    def _compact(self) -> None:
        """Drop expiry entries of requests already answered, so the heap stays bounded."""
        self._expiry = [entry for entry in self._expiry if entry[1] in self._waiting]
        heapq.heapify(self._expiry)

    def _expire(self, now: float) -> None:
        # Entries are only dropped, their futures left alone: whoever still awaits one
        # has a deadline timer of its own that ends the wait with DeadlineExceeded.
        # Cancelling the future here would raise CancelledError in that waiter's task
        # when another request is made between the deadline and that timer.
        expiry = self._expiry
        while expiry and expiry[0][0] < now:
            _, request_id = heapq.heappop(expiry)
            self._waiting.pop(request_id, None)

    def deliver(self, reply: Message) -> bool:
        """Hand a reply to its waiter; False for a reply nobody waits for (any more)."""
        waiter = self._waiting.get(reply.causationid or "")
        if waiter is None:
            return False
        waiter.replies.append(reply)
        if waiter.want is not None and len(waiter.replies) >= waiter.want:
            del self._waiting[reply.causationid or ""]
            if not waiter.future.done():
                waiter.future.set_result(waiter.replies)
        return True

    def forget(self, request_id: str) -> list[Message]:
        """Stop waiting and return what arrived so far."""
        waiter = self._waiting.pop(request_id, None)
        return [] if waiter is None else waiter.replies
