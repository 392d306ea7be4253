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
(:func:`subscribe_plain`, see :mod:`._received`): no task of the subscription's
between nats-py's read loop and the reader, whose wake-up is the only task
switch, and the message read from its header block as received
(:func:`read_plain`), not from a dict of it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

import nats.errors
from nats.aio.client import Client
from nats.aio.subscription import Subscription as NatsSubscriptionHandle

from ..._exceptions import ConnectionLost, DecodeError
from ..._messages.envelope import Message, from_headers
from ..._messages.ids import uuid7
from ..._transport import Delivery, is_reply_inbox
from . import _received as received
from ._headers import read_message
from ._received import Take

if TYPE_CHECKING:
    from . import NatsTransport

__all__ = [
    "CoreSubscription",
    "Headers",
    "decode_plain",
    "read_plain",
    "rides_core",
    "subscribe_plain",
]

log = logging.getLogger("seawall.transports.nats")

_MAX_WAITING = 65_536  # replies received and not yet read: beyond, a reply is dropped


Headers = bytes | dict[str, str] | None
"""A plain message's headers: its block as received, or the dict nats-py read, or none."""


async def subscribe_plain(
    client: Client,
    subject: str,
    arrived: Take,
    *,
    queue: str = "",
    timeout: float = 5.0,
) -> NatsSubscriptionHandle:
    """A plain subscription handing each message to ``arrived`` as nats-py reads it
    (:mod:`._received`), and a round trip (within ``timeout``), so the server has the
    interest before this returns."""
    handle = await received.subscribe(client, subject, arrived, queue=queue)
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

    async def _arrived(self, subject: str, data: bytes, headers: Headers) -> None:
        if self._state != "open":
            return
        if len(self._ready) >= _MAX_WAITING:
            log.warning(
                "reply inbox %s holds %d unread replies; one dropped", self.channel, _MAX_WAITING
            )
            return
        message = await read_plain(self.transport.client, subject, data, headers)
        self._ready.append((message, 1))
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
                await received.unsubscribe(self.transport.client, handle)

    async def break_link(self) -> None:
        if self._state == "open":
            await self._end("broken")

    async def close(self) -> None:
        if self._state == "open":
            await self._end("closed")


async def read_plain(client: Client, subject: str, data: bytes, headers: Headers) -> Message:
    """The message a plain (core NATS) message carries."""
    if isinstance(headers, bytes):
        message = read_message(headers, data)  # the common case, from the block itself
        if message is not None:
            return message
        headers = await received.read_headers(client, headers)
    return decode_plain(subject, data, headers)


def decode_plain(subject: str, data: bytes, headers: dict[str, str] | None) -> Message:
    """The message of a plain (core NATS) message's headers as nats-py reads them."""
    headers = headers or {}  # read, not changed: no copy
    try:
        return from_headers(headers, data)
    except DecodeError as exc:
        # Not a seawall message: handed on under a type no one waits for, never lost silently.
        return Message(
            id=f"nats-{uuid7()}",
            type="seawall.nats.Undecodable",
            source=f"nats:{subject}",
            data=data,
            headers={**headers, "seawall-decode-error": str(exc)},
        )
