"""Reading a RabbitMQ channel: consumers per partition queue, settling and decoding.

The consuming half of :mod:`seawall.transports.rabbitmq` (whose docstring
gives the design); kept apart so each module stays small. The hot path talks
to aiormq (the AMQP client under aio-pika) directly: one AMQP channel per
partition consumer, ``basic.qos`` as the credit.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections import Counter, deque
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import aiormq
import aiormq.abc
import aiormq.exceptions

from ..._exceptions import ConnectionLost, DecodeError
from ..._messages.envelope import Message, from_headers
from ..._messages.ids import uuid7
from ..._transport import Delivery
from ..._transport.ownership import Fence
from ._layout import ATTEMPT, BROKER_HEADERS
from ._topology import translated

if TYPE_CHECKING:
    from . import RabbitMQTransport
    from ._members import Membership

__all__ = ["CE_PREFIX", "Source", "RabbitMQSubscription", "decode"]

log = logging.getLogger("seawall.transports.rabbitmq")

CE_PREFIX = "cloudEvents:"
"""CloudEvents AMQP binding: attribute headers are ``cloudEvents:<name>``."""
_JMS_PREFIX = "cloudEvents_"  # the binding's spelling for JMS-style clients; read as well
_IGNORED = (aiormq.exceptions.AMQPError, ConnectionError, asyncio.TimeoutError, RuntimeError)


@dataclass(frozen=True, slots=True)
class Source:
    """A queue a subscription reads: a group's partition queue, or the unclaimed queue."""

    queue: str
    partition: int | None
    """None for the unclaimed queue, whose messages carry their partition as routing key."""
    share: int
    """This consumer's ``basic.qos`` prefetch."""


@dataclass(slots=True)
class _Held:
    msg: aiormq.abc.DeliveredMessage
    partition: int
    attempt: int


class RabbitMQSubscription:
    """One member of a group on a RabbitMQ channel."""

    def __init__(
        self,
        transport: RabbitMQTransport,
        channel: str,
        group: str,
        queues: list[str],
        prefetch: int,
    ) -> None:
        self.transport = transport
        self.channel = channel
        self.group = group
        self.queues = queues  # partition -> queue
        self.prefetch = prefetch
        self.member = uuid7()
        self.membership: Membership | None = None
        self.counts_returns = True
        """Whether the queues count returns (quorum queues), so a plain requeue keeps
        ``attempt`` right; else a nack republishes with the attempt in a header."""
        self.unacked = False
        """Whether RabbitMQ hands messages over without waiting for acks (a reply inbox):
        ack settles locally, a plain nack puts the message back in front locally."""
        self.wake = asyncio.Event()
        self.held: Counter[int] = Counter()  # partition -> received and not settled
        self._consumers: dict[str, tuple[aiormq.abc.AbstractChannel, str]] = {}
        self._retired: dict[str, aiormq.abc.AbstractChannel] = {}  # consumer cancelled
        self._ready: deque[_Held] = deque()
        self._unsettled: dict[int, _Held] = {}
        self._tokens = itertools.count()
        self._state = "open"  # open | closed | broken
        self._intake = True  # False once stop_intake was called: no consumer any more
        self._why: str | None = None
        self._lost: str | None = None  # why it must end, found in a callback

    @property
    def open(self) -> bool:
        return self._state == "open"

    def fence(self, partition: int) -> Fence | None:
        """The fence of a write that depends on owning ``partition`` (see
        :class:`~seawall.Fence`), or None on a channel of one partition."""
        return None if self.membership is None else self.membership.member.fence(partition)

    def owns(self, partition: int) -> bool:
        return self.queues[partition] in self._consumers

    # -- consumers -----------------------------------------------------------
    async def read(self, source: Source) -> None:
        """Start consuming ``source``."""
        if self._state != "open" or not self._intake or source.queue in self._consumers:
            return
        connection = await self.transport.connection()
        with translated(f"reading {source.queue!r} for group {self.group!r}"):
            wrapper = await connection.channel(publisher_confirms=False)
            amqp = await wrapper.get_underlay_channel()
            await amqp.basic_qos(prefetch_count=source.share)

            async def arrived(msg: aiormq.abc.DeliveredMessage) -> None:
                self._arrived(msg, source.partition)

            ok = await amqp.basic_consume(source.queue, arrived, no_ack=self.unacked)
        assert ok.consumer_tag is not None
        self._consumers[source.queue] = (amqp, ok.consumer_tag)
        amqp.on_consumer_cancel_callbacks.add(self._cancelled_by_broker)
        amqp.closing.add_done_callback(lambda _: self._channel_closed(source.queue, amqp))
        self.wake.set()

    def _cancelled_by_broker(self, frame: object) -> None:
        self.lost("RabbitMQ cancelled its consumer (was a queue deleted?)")

    def _channel_closed(self, queue: str, amqp: aiormq.abc.AbstractChannel) -> None:
        entry = self._consumers.get(queue)
        if entry is not None and entry[0] is amqp:  # not closed by us
            self.lost(f"RabbitMQ closed the AMQP channel reading {queue!r}")

    def lost(self, why: str) -> None:
        """End the subscription as broken, from a callback that cannot do it itself."""
        if self._state == "open" and self._lost is None:
            self._lost = why
            self.wake.set()

    async def stop_reading(self, queue: str) -> None:
        """Stop consuming ``queue``; messages it holds stay held until settled."""
        entry = self._consumers.pop(queue, None)
        if entry is not None:
            amqp, tag = entry
            self._retired[queue] = amqp  # still needed to settle what it delivered
            with contextlib.suppress(*_IGNORED):
                await amqp.basic_cancel(tag)

    async def retire(self, queue: str) -> None:
        """Close the AMQP channel that read ``queue``, once none of its messages is held."""
        amqp = self._retired.pop(queue, None)
        if amqp is not None:
            with contextlib.suppress(*_IGNORED):
                await amqp.close()

    def _arrived(self, msg: aiormq.abc.DeliveredMessage, partition: int | None) -> None:
        if self._state != "open":
            return  # the AMQP channel closes with the subscription: it comes again
        if partition is None:  # from the unclaimed queue: the routing key tells
            key = msg.routing_key or "0"
            partition = int(key) if key.isdigit() and int(key) < len(self.queues) else 0
        self.held[partition] += 1
        self._ready.append(_Held(msg, partition, _attempt(msg)))
        self.wake.set()

    # -- deliveries ------------------------------------------------------------
    def __aiter__(self) -> AsyncIterator[Delivery]:
        return self._deliveries()

    async def _deliveries(self) -> AsyncIterator[Delivery]:
        while True:
            if self._lost is not None and self._state == "open":
                await self.break_link(self._lost)
            if self._state == "broken":
                why = self._why or "the link to RabbitMQ broke"
                raise ConnectionLost(
                    f"stopped reading channel {self.channel!r} as group {self.group!r}: "
                    f"{why}; subscribe again"
                )
            if self._state == "closed" or not self._intake:
                return
            if self._ready and len(self._unsettled) < self.prefetch:
                held = self._ready.popleft()
                token = next(self._tokens)
                self._unsettled[token] = held
                yield Delivery(
                    message=decode(held.msg),
                    channel=self.channel,
                    partition=held.partition,
                    attempt=held.attempt,
                    token=token,
                )
                continue
            self.wake.clear()
            await self.wake.wait()

    async def ack(self, delivery: Delivery) -> None:
        held = self._settle(delivery)
        if held is not None:
            if not self.unacked:
                with contextlib.suppress(*_IGNORED):
                    await _channel(held).basic_ack(_tag(held))
            self._settled(held)

    async def nack(self, delivery: Delivery, *, delay: float = 0.0) -> None:
        held = self._settle(delivery)
        if held is None:
            return
        if self.unacked and delay <= 0:  # RabbitMQ has let it go: it comes again from here
            self._ready.appendleft(_Held(held.msg, held.partition, held.attempt + 1))
            self.wake.set()
            return
        if not self._intake and delay <= 0:
            return  # kept unacked: the close of its AMQP channel returns it (stop_intake)
        try:
            if delay > 0 or not self.counts_returns:
                queue = self.queues[held.partition]
                await self.transport.delay(held.msg, queue, held.attempt + 1, delay)
                if not self.unacked:
                    await _channel(held).basic_ack(_tag(held))
            else:
                await _channel(held).basic_nack(_tag(held), requeue=True)
        except (*_IGNORED, ConnectionLost) as exc:
            # the link broke: the broker gives the message back by itself
            log.debug("nack of %s not sent (%r); it comes again", delivery.message.id, exc)
        self._settled(held)

    async def stop_intake(self) -> None:
        """Cancel every consumer, keeping their AMQP channels to settle what they delivered.

        A nack without delay from now on sends nothing: the message stays unacked
        on its channel, and closing the channels at :meth:`close` returns it.
        RabbitMQ (3.x quorum queues) puts a message requeued by ``basic.nack``
        behind the messages ready in its queue, so the later messages of its key
        would go first; the messages of a closed channel go back in their queue
        order, ahead of the ready ones. Nothing more is delivered once the
        cancels are confirmed; what arrived before and was not handed out goes
        back with its channel too.
        """
        if self._state == "open" and self._intake:
            self._intake = False
            for queue in list(self._consumers):
                await self.stop_reading(queue)
            self.wake.set()

    def _settle(self, delivery: Delivery) -> _Held | None:
        assert isinstance(delivery.token, int)
        if self._state != "open":
            self._unsettled.pop(delivery.token, None)
            return None  # its AMQP channel is gone: the broker gives it back
        return self._unsettled.pop(delivery.token, None)

    def _settled(self, held: _Held) -> None:
        self.held[held.partition] -= 1
        if self.membership is not None:
            self.membership.settled(held.partition)
        self.wake.set()

    # -- ending ------------------------------------------------------------------
    async def _end(self, state: str, why: str | None = None) -> None:
        self._state = state
        self._why = why
        self.wake.set()
        self.transport._left(self)
        consumers, self._consumers = self._consumers, {}
        self._ready.clear()
        self._unsettled.clear()
        self.held.clear()
        retired, self._retired = self._retired, {}
        channels = [amqp for amqp, _ in consumers.values()] + list(retired.values())
        for amqp in channels:  # closing returns what each consumer held
            with contextlib.suppress(*_IGNORED):
                await amqp.close()

    async def break_link(self, why: str | None = None) -> None:
        if self._state == "open":
            await self._end("broken", why)
        if self.membership is not None:
            await self.membership.stop()

    async def close(self) -> None:
        if self._state == "open":
            await self._end("closed")
        if self.membership is not None:
            await self.membership.stop()
            await self.membership.leave()


def _channel(held: _Held) -> aiormq.abc.AbstractChannel:
    return held.msg.channel


def _tag(held: _Held) -> int:
    tag = held.msg.delivery_tag
    assert tag is not None
    return tag


def _attempt(msg: aiormq.abc.DeliveredMessage) -> int:
    """Attempt number: where a republished message started, plus the broker's count of
    returns (quorum queues; the redelivered flag on classic queues)."""
    headers = msg.header.properties.headers or {}
    base = headers.get(ATTEMPT, 1)
    count = headers.get("x-delivery-count")
    returns = count if isinstance(count, int) else int(bool(msg.redelivered))
    return (base if isinstance(base, int) else 1) + returns


def decode(msg: aiormq.abc.DeliveredMessage) -> Message:
    """The seawall message in an AMQP delivery (CloudEvents binary mode)."""
    properties = msg.header.properties
    headers: dict[str, str] = {}
    for key, value in (properties.headers or {}).items():
        if key in BROKER_HEADERS:
            continue
        if key.startswith(_JMS_PREFIX):
            key = CE_PREFIX + key.removeprefix(_JMS_PREFIX)
        headers[key] = value.decode(errors="replace") if isinstance(value, bytes) else str(value)
    if properties.content_type:
        headers["content-type"] = properties.content_type
    try:
        return from_headers(headers, msg.body, CE_PREFIX)
    except DecodeError as exc:
        # Not a seawall message: handed on under a type no handler has, so the
        # dispatcher dead-letters it with the reason instead of losing it.
        return Message(
            id=properties.message_id or uuid7(),
            type="seawall.rabbitmq.Undecodable",
            source=f"amqp:{msg.exchange or ''}/{msg.routing_key or ''}",
            data=msg.body,
            headers={**headers, "seawall-decode-error": str(exc)},
        )
