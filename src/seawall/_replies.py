"""Correlation of replies with the requests that asked for them.

A request is a message with ``replyto`` set to the requester's per-instance
inbox. Every reply carries ``causationid`` = the request's id, so one table
serves request/response (wait for one reply) and scatter-gather (collect
replies until a count or a deadline).
"""

from __future__ import annotations

import asyncio
from typing import ClassVar

from ._message import Message
from ._payload import Document

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
    """Requests waiting for replies, by request id."""

    def __init__(self) -> None:
        self._waiting: dict[str, _Waiter] = {}

    def __len__(self) -> int:
        return len(self._waiting)

    def expect(self, request_id: str, want: int | None) -> asyncio.Future[list[Message]]:
        """Start waiting; the future resolves once ``want`` replies arrived (never if None)."""
        waiter = self._waiting[request_id] = _Waiter(want)
        return waiter.future

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
