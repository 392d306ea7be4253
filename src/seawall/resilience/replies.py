"""Reply caches: what a responder answered, by request id, so a repeat runs nothing.

A requester that got no reply in time sends the same request again, with the
same message id (:class:`~seawall.resilience.RequestRetry`); so does a broker
that redelivers. The responder's dispatcher looks the id up before it runs a
handler and, if the request was answered, sends that answer again instead.

Two levels: every responder keeps the latest replies in memory
(:class:`RecentReplies`, bounded, synchronous, the one the hot path asks);
a service that asks for it also keeps them in a :class:`ReplyStore`, which
outlives the process (``seawall.transports.SqliteReplyStore`` in a SQLite file
beside the embedded broker's, ``seawall.transports.redis.RedisReplyStore`` on Redis).
A store is the small async interface below: get, put and close, values kept
for a while and then forgotten by the store itself.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Protocol, runtime_checkable

from .._exceptions import ConfigurationError

__all__ = ["RecentReplies", "ReplyStore"]


@runtime_checkable
class ReplyStore(Protocol):
    """A durable reply cache: encoded replies by request id, kept ``keep`` seconds."""

    async def get(self, request_id: str) -> bytes | None:
        """The encoded reply given to ``request_id``, or None."""
        ...

    async def put(self, request_id: str, reply: bytes, *, now: float) -> None:
        """Keep ``reply`` as the answer to ``request_id`` (from ``now`` on)."""
        ...

    async def close(self) -> None:
        """Release the store's connection or file."""
        ...


class RecentReplies:
    """The latest ``limit`` replies in memory, least recently used dropped first.

    Also remembers which requests are being handled right now, so a repeat that
    arrives meanwhile is not run twice (its requester gets the reply the first
    run sends, which carries the same request id).
    """

    __slots__ = ("_replies", "_running", "hits", "limit")

    def __init__(self, limit: int = 1024) -> None:
        if limit < 1:
            raise ConfigurationError(f"a reply cache keeps 1 reply at least, got {limit}")
        self.limit = limit
        self._replies: OrderedDict[str, object] = OrderedDict()
        self._running: set[str] = set()
        self.hits = 0
        """Repeats answered from here (or dropped while the first was running)."""

    def __len__(self) -> int:
        return len(self._replies)

    def get(self, request_id: str) -> object | None:
        """The reply given to ``request_id``, or None."""
        reply = self._replies.get(request_id)
        if reply is not None:
            self._replies.move_to_end(request_id)
            self.hits += 1
        return reply

    def put(self, request_id: str, reply: object) -> None:
        """Remember ``reply`` as the answer to ``request_id``."""
        replies = self._replies
        replies[request_id] = reply
        replies.move_to_end(request_id)
        if len(replies) > self.limit:
            replies.popitem(last=False)

    def answer(self, request_id: str, reply: object) -> None:
        """:meth:`put` and :meth:`finish` in one call: the path of every request answered."""
        replies = self._replies
        replies[request_id] = reply
        replies.move_to_end(request_id)
        if len(replies) > self.limit:
            replies.popitem(last=False)
        self._running.discard(request_id)

    def start(self, request_id: str) -> bool:
        """Mark ``request_id`` as being handled; False if it already is (a repeat meanwhile)."""
        if request_id in self._running:
            self.hits += 1
            return False
        self._running.add(request_id)
        return True

    def begin(self, request_id: str) -> bool:
        """:meth:`start` for a request never answered here: False (nothing marked) if a reply
        to ``request_id`` is kept or it is being handled. One look on the hot path."""
        if request_id in self._replies or request_id in self._running:
            return False
        self._running.add(request_id)
        return True

    def finish(self, request_id: str) -> None:
        """``request_id`` is no longer being handled (answered or failed)."""
        self._running.discard(request_id)

    def reset(self) -> None:
        """Nothing is being handled any more (the consumer stopped or lost its link)."""
        self._running.clear()
