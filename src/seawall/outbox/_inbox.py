"""The inbox: a handler marked idempotent changes state once per message, however often
the message comes.

Delivery is at-least-once: a broker redelivers what was not acknowledged, a
relay publishes again what it could not settle. An idempotent handler runs
in an outbox transaction that first records ``(consumer, message id)`` in the
inbox table; its writes, its outgoing messages and that entry commit
together. A repeat finds the entry, is acknowledged without running the
handler, and gets the reply the first run gave (kept with the entry), so a
requester whose first reply was lost still gets the same answer. Two copies
handled at the same moment are kept apart by the database: the second claim
waits until the first transaction ends, then sees its entry (or, if it
rolled back, takes the claim itself).

``consumer`` defaults to the handler's name (``service.function``), so two
handlers of one service that take the same message each run once. Entries
are kept ``keep`` seconds (a week by default) and then expired by
:meth:`Inbox.expire` (:meth:`Inbox.run` does it periodically), which bounds
the table; a copy that arrives later than that runs again, so keep entries
longer than the broker may hold a message back.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Generic, TypeVar, overload

from .._clock import Clock
from .._exceptions import ConfigurationError
from .._messages.codec import JSON, Codec
from .._messages.payload import Payload
from .._runtime.context import Context
from .._runtime.service import reply_types
from ._outbox import InboxEntry, Outbox, OutboxTransaction

__all__ = ["Inbox"]

log = logging.getLogger("seawall.outbox")

T = TypeVar("T", bound=OutboxTransaction)
P = TypeVar("P", bound=Payload)
R = TypeVar("R")

WEEK = 7 * 24 * 3600.0


class Inbox(Generic[T]):
    """Deduplicates handled messages in the outbox's database (table ``{prefix}inbox``)."""

    def __init__(self, outbox: Outbox[T], *, keep: float = WEEK, codec: Codec = JSON) -> None:
        if keep <= 0:
            raise ConfigurationError(f"Inbox keep must be a positive number of seconds, got {keep}")
        self.outbox = outbox
        self.keep = keep
        self.codec = codec

    @property
    def clock(self) -> Clock:
        return self.outbox.clock

    @overload
    def idempotent(
        self, handler: Callable[[P, T], Awaitable[R]]
    ) -> Callable[[P, Context], Awaitable[R]]: ...

    @overload
    def idempotent(
        self, *, consumer: str
    ) -> Callable[[Callable[[P, T], Awaitable[R]]], Callable[[P, Context], Awaitable[R]]]: ...

    def idempotent(self, handler: Any = None, *, consumer: str | None = None) -> Any:
        """Run ``handler(payload, tx)`` once per message, in a transaction with its inbox entry.

        Use under ``@service.command`` or ``@service.subscribe(...)``: the service gets a
        ``(payload, ctx)`` handler that opens the transaction and skips repeats.
        """
        if handler is None:
            return lambda fn: self._wrap(fn, consumer)
        return self._wrap(handler, consumer)

    def _wrap(self, handler: Any, consumer: str | None) -> Callable[[Any, Context], Awaitable[Any]]:
        replies = reply_types(handler)
        name = consumer

        @functools.wraps(handler)
        async def once(payload: Any, ctx: Context) -> Any:
            key = name or f"{ctx.service}.{getattr(handler, '__name__', 'handler')}"
            message = ctx.message
            if message is None:
                raise ConfigurationError(
                    f"{key} is idempotent per message; call it through a service, not directly"
                )
            async with self.outbox.transaction(ctx) as tx:
                earlier = await tx._inbox_claim(key, message.id)
                if earlier is not None:
                    log.debug("%s: message %s was handled before; not again", key, message.id)
                    return self._reply(earlier, replies)
                result = await handler(payload, tx)
                if isinstance(result, Payload):
                    await tx._inbox_reply(
                        key, message.id, result.type_name, self.codec.encode(result)
                    )
            return result

        return once

    def _reply(self, entry: InboxEntry, replies: dict[str, type[Payload]]) -> Any:
        """The reply the first run gave, decoded again (None if it gave none)."""
        if entry.reply_type is None or entry.reply is None:
            return None
        cls = replies.get(entry.reply_type)
        if cls is None:
            raise ConfigurationError(
                f"the inbox kept a {entry.reply_type} reply to message {entry.message_id}, and "
                f"{entry.consumer} no longer declares that it returns one"
            )
        return self.codec.decode(entry.reply, cls)

    async def seen(self, message_id: str, *, consumer: str) -> bool:
        """Whether ``consumer`` has handled ``message_id`` (within the keep window)."""
        return await self.outbox.inbox_entry(consumer, message_id) is not None

    async def expire(self) -> int:
        """Forget entries older than ``keep`` seconds; how many went."""
        return await self.outbox.expire_inbox(self.clock.time() - self.keep)

    async def run(self, *, every: float = 3600.0) -> None:
        """Expire old entries every ``every`` seconds, until cancelled."""
        while True:
            expired = await self.expire()
            if expired:
                log.info("inbox: %d entries older than %.0f s expired", expired, self.keep)
            await self.clock.sleep(every)
