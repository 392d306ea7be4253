"""Reply inboxes over core NATS: no stream, no acknowledgement, no round trip to store.

A reply inbox (a channel named ``_inbox.<instance>``, declared ephemeral by
the runtime) needs no durability: its subscriber is the only reader, a reply
nobody waits for is dropped anyway, and the request it answers is already
stored in its durable command channel. So :mod:`seawall.transports.nats`
publishes replies as plain NATS messages (CloudEvents headers, the payload as
the body) on the inbox's subject and reads them with a plain subscription:
one hop through the server instead of a stored, acknowledged publish and a
pull. A reply published while its requester is gone, or while the link is
down, is lost, as on any ephemeral channel.

Plain subscriptions here (reply inboxes, and the direct requests of
:mod:`._direct`) take their messages as nats-py reads them
(:func:`subscribe_plain`): nats-py gives a subscription with a callback a task
of its own, which takes each message from a queue and calls back, one task
switch per message before the reader's own wake-up; instead the subscription's
queue is a :class:`_Handoff` that passes each message on at once. A nats-py
without that queue gets the callback way.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any, cast

import nats.errors
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription as NatsSubscriptionHandle

from ..._exceptions import ConnectionLost, DecodeError
from ..._messages.envelope import Message, from_headers
from ..._messages.ids import uuid7
from ..._transport import Delivery, is_reply_inbox

if TYPE_CHECKING:
    from . import NatsTransport

__all__ = ["CoreSubscription", "decode_plain", "rides_core", "subscribe_plain"]

log = logging.getLogger("seawall.transports.nats")

_MAX_WAITING = 65_536  # replies received and not yet read: beyond, a reply is dropped


class _Handoff:
    """Stands in for a nats-py subscription's queue: each message goes to ``arrived`` as
    nats-py reads it, so no task of the subscription's takes it from a queue first."""

    def __init__(self, handle: Any, arrived: Callable[[Msg], None]) -> None:
        self._handle = handle
        self._arrived = arrived

    def put_nowait(self, msg: Msg) -> None:
        self._handle._pending_size -= len(msg.data)  # nothing stays pending here
        try:
            self._arrived(msg)
        except Exception:  # never into nats-py's read loop
            log.exception("a plain NATS message on %s could not be taken", msg.subject)

    def empty(self) -> bool:
        return True

    def qsize(self) -> int:
        return 0

    def task_done(self) -> None:
        return None

    async def join(self) -> None:
        return None


async def subscribe_plain(
    client: Client,
    subject: str,
    arrived: Callable[[Msg], None],
    *,
    queue: str = "",
    timeout: float = 5.0,
) -> NatsSubscriptionHandle:
    """A plain subscription handing each message to ``arrived`` as nats-py reads it, and
    a round trip (within ``timeout``), so the server has the interest before this returns."""
    handle = await client.subscribe(subject, queue=queue)  # no callback: no task of its own
    if isinstance(getattr(handle, "_pending_queue", None), asyncio.Queue):
        cast(Any, handle)._pending_queue = _Handoff(handle, arrived)
    else:  # another nats-py: its own way, a task calling back
        await handle.unsubscribe()

        async def callback(msg: Msg) -> None:
            arrived(msg)

        handle = await client.subscribe(subject, queue=queue, cb=callback)
    await client.flush(timeout=max(1, int(timeout)))
    return handle


def rides_core(channel: str) -> bool:
    """Whether ``channel`` is a reply inbox, carried by core NATS rather than JetStream."""
    return is_reply_inbox(channel)


class CoreSubscription:
    """The one reader of a reply inbox, over a plain NATS subscription."""

    def __init__(self, transport: NatsTransport, channel: str, subject: str, prefetch: int):
        self.transport = transport
        self.channel = channel
        self.subject = subject
        self.prefetch = prefetch
        self.wake = asyncio.Event()
        self._ready: deque[tuple[Message, int]] = deque()
        self._unsettled: dict[int, tuple[Message, int]] = {}
        self._count = 0
        self._handle: NatsSubscriptionHandle | None = None
        self._state = "open"  # open | closed | broken
        self._intake = True  # False once stop_intake was called

    async def start(self) -> None:
        # Once it returns the server has the interest: a reply sent by another
        # connection right after would otherwise go nowhere.
        transport = self.transport
        self._handle = await subscribe_plain(
            transport.client, self.subject, self._arrived, timeout=transport.api_timeout
        )

    def _arrived(self, msg: Msg) -> None:
        if self._state != "open":
            return
        if len(self._ready) >= _MAX_WAITING:
            log.warning(
                "reply inbox %s holds %d unread replies; one dropped", self.channel, _MAX_WAITING
            )
            return
        self._ready.append((decode_plain(msg), 1))
        self.wake.set()

    def __aiter__(self) -> AsyncIterator[Delivery]:
        return self._deliveries()

    async def _deliveries(self) -> AsyncIterator[Delivery]:
        while True:
            if self._state == "broken":
                raise ConnectionLost(
                    f"stopped reading reply inbox {self.channel!r}: the link to NATS broke; "
                    "subscribe again"
                )
            if self._state == "closed" or not self._intake:
                return
            if self._ready and len(self._unsettled) < self.prefetch:
                message, attempt = self._ready.popleft()
                self._count += 1
                self._unsettled[self._count] = (message, attempt)
                yield Delivery(
                    message=message,
                    channel=self.channel,
                    partition=0,
                    attempt=attempt,
                    token=self._count,
                )
                continue
            self.wake.clear()
            await self.wake.wait()

    async def stop_intake(self) -> None:
        """Iteration ends (a reply inbox keeps nothing: what is left goes with it)."""
        self._intake = False
        self.wake.set()

    def _settle(self, delivery: Delivery) -> tuple[Message, int] | None:
        assert isinstance(delivery.token, int)
        return self._unsettled.pop(delivery.token, None)

    async def ack(self, delivery: Delivery) -> None:
        if self._settle(delivery) is not None:
            self.wake.set()

    async def nack(self, delivery: Delivery, *, delay: float = 0.0) -> None:
        """Deliver it again from this process's memory, not before ``delay`` seconds."""
        held = self._settle(delivery)
        if held is None or self._state != "open":
            return
        again = (held[0], held[1] + 1)
        clock = self.transport.clock
        if delay > 0:
            clock.call_at(clock.time() + delay, lambda: self._requeue(again))
        else:
            self._requeue(again)

    def _requeue(self, item: tuple[Message, int]) -> None:
        if self._state == "open":
            self._ready.append(item)
            self.wake.set()

    async def _end(self, state: str) -> None:
        self._state = state
        self.wake.set()
        self.transport._left_core(self)
        self._ready.clear()
        self._unsettled.clear()
        handle, self._handle = self._handle, None
        if handle is not None:
            with contextlib.suppress(nats.errors.Error):
                await handle.unsubscribe()

    async def break_link(self) -> None:
        if self._state == "open":
            await self._end("broken")

    async def close(self) -> None:
        if self._state == "open":
            await self._end("closed")


def decode_plain(msg: Msg) -> Message:
    """The message a plain (core NATS) message carries."""
    headers = msg.headers or {}  # read, not changed: no copy
    try:
        return from_headers(headers, msg.data)
    except DecodeError as exc:
        # Not a seawall message: handed on under a type no one waits for, never lost silently.
        return Message(
            id=f"nats-{uuid7()}",
            type="seawall.nats.Undecodable",
            source=f"nats:{msg.subject}",
            data=msg.data,
            headers={**headers, "seawall-decode-error": str(exc)},
        )
