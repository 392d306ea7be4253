"""Direct requests over core NATS: a queue group per group, nothing stored.

A channel declared with ``ChannelSpec(requests="direct")`` sends its requests
(messages with a reply channel and a deadline, published without
``not_before``) as plain NATS messages on ``seawall.<tok>.direct``, a subject
outside the channel's stream (:mod:`._layout`), instead of an acknowledged
JetStream publish followed by a pull. Every member of a group subscribes to
that subject in the NATS queue group named by the group's token, so the server
gives each request to one member of every group: one hop through the server,
as the reply then takes over core NATS to the caller's inbox (:mod:`._core`).

A :class:`DirectReader` is one member's part. What it receives waits in
memory until the subscription hands it out (within the subscription's
``prefetch``, together with its JetStream deliveries); an ack forgets it, a
nack hands it out again from memory (``attempt`` + 1, after ``delay``). When the
member stops, it unsubscribes first and then publishes what it held and had
not settled back to the subject, so another member of the group takes it (as a
first attempt), or nobody does. What it held when its link broke or its
process died is lost, as is a request published while no member listens; the
caller, waiting with its deadline, times out and asks again, and the
responder's reply cache answers a repeat it already handled.
"""

from __future__ import annotations

import contextlib
import logging
from collections import deque
from typing import TYPE_CHECKING

import nats.errors
from nats.aio.subscription import Subscription as NatsSubscriptionHandle

from ..._messages.envelope import Message
from ..._transport import Delivery
from ..._transport.assignment import token
from . import _received as received
from ._core import Headers, read_plain, subscribe_plain

if TYPE_CHECKING:
    from ._subscription import NatsSubscription

__all__ = ["DirectReader"]

log = logging.getLogger("seawall.transports.nats")

_MAX_WAITING = 65_536  # received and not handed out: beyond, a request is dropped

_Request = tuple[Message, bytes, Headers]  # as read, and as received: payload, headers


class DirectReader:
    """One member's queue-group subscription to a channel's direct requests."""

    def __init__(self, sub: NatsSubscription) -> None:
        self.sub = sub
        self.subject = sub.stream.direct_subject
        self._ready: deque[tuple[_Request, int]] = deque()  # (request, attempts so far)
        self._held: dict[int, tuple[_Request, int]] = {}  # token -> (request, attempt)
        self._later: dict[int, tuple[_Request, int]] = {}  # nacked with a delay, by token
        self._count = 0
        self._handle: NatsSubscriptionHandle | None = None
        self._open = True

    @property
    def held(self) -> int:
        """Handed out and not settled."""
        return len(self._held)

    @property
    def waiting(self) -> bool:
        """Whether a request waits to be handed out."""
        return bool(self._ready)

    async def start(self) -> None:
        transport = self.sub.transport
        self._handle = await subscribe_plain(
            transport.client,
            self.subject,
            self._arrived,
            queue=token(self.sub.group),
            timeout=transport.api_timeout,
        )

    async def _arrived(self, subject: str, data: bytes, headers: Headers) -> None:
        if not self._open:
            return
        if len(self._ready) >= _MAX_WAITING:
            log.warning("%s: %d direct requests wait; one dropped", self.subject, _MAX_WAITING)
            return
        message = await read_plain(self.sub.transport.client, subject, data, headers)
        self._ready.append(((message, data, headers), 0))
        self.sub.wake.set()

    def take(self) -> Delivery:
        """The oldest waiting request, handed out (check :attr:`waiting` first)."""
        request, attempts = self._ready.popleft()
        self._count += 1
        self._held[self._count] = (request, attempts + 1)
        return Delivery(
            message=request[0],
            channel=self.sub.stream.channel,
            partition=0,
            attempt=attempts + 1,
            token=self._count,
        )

    def ack(self, number: int) -> None:
        self._held.pop(number, None)

    def nack(self, number: int, delay: float) -> None:
        """Hand it out again from memory, not before ``delay`` seconds from now."""
        held = self._held.pop(number, None)
        if held is None or not self._open:
            return
        if delay <= 0:
            self._ready.append(held)
            return
        self._later[number] = held
        clock = self.sub.transport.clock
        clock.call_at(clock.time() + delay, lambda: self._due(number))

    def _due(self, number: int) -> None:
        held = self._later.pop(number, None)
        if held is not None and self._open:
            self._ready.append(held)
            self.sub.wake.set()

    async def stop(self) -> None:
        """Take no more: unsubscribe, so the group's other members get what comes next."""
        handle, self._handle = self._handle, None
        if handle is not None:
            with contextlib.suppress(nats.errors.Error):
                await received.unsubscribe(self.sub.transport.client, handle)

    async def close(self) -> None:
        """Stop, and publish what is held and unsettled back to the group (on a live link)."""
        await self.stop()
        self._open = False
        left = [
            request for request, _ in [*self._held.values(), *self._later.values(), *self._ready]
        ]
        self._held.clear()
        self._later.clear()
        self._ready.clear()
        client = self.sub.transport.client
        if not left or not client.is_connected:
            if left:
                log.debug("%d direct request(s) lost with a broken link", len(left))
            return
        with contextlib.suppress(nats.errors.Error):
            for _, data, headers in left:  # as it came: the headers nats-py reads from it
                if isinstance(headers, bytes):
                    headers = await received.read_headers(client, headers)
                await client.publish(self.subject, data, headers=headers)
