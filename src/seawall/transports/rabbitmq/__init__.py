"""The RabbitMQ transport (``amqp://`` and ``amqps://``), over aio-pika.

How the transport model (see :mod:`seawall._transport`) maps onto AMQP 0-9-1
(object names are spelled out in :mod:`._rabbitmq_layout`):

* **Channel** → a durable direct exchange ``seawall.<token>`` that routes by
  partition number (routing key ``"0"``, ``"1"``, …), with an alternate
  exchange feeding the quorum queue ``seawall.<token>.unclaimed``: a message
  published while the channel has no group yet waits there instead of being
  dropped. The partition count is recorded once, in the single message of the
  queue ``seawall.<token>.layout`` (``x-max-length`` 1 with ``reject-publish``,
  so the first declaration wins and every process reads the same count).
* **Group** → one quorum queue per partition, ``seawall.<token>.g.<group
  token>.<p>``, bound to the exchange under key ``p``. Every group gets every
  message; members of a group compete for its queues. A new group that starts
  at ``"earliest"`` also reads the unclaimed queue, so what was published
  before any group existed reaches the first groups that read it (once, to one
  of them: RabbitMQ keeps messages per queue, not per channel). Messages taken
  from the unclaimed queue may interleave with newer ones of their key.
* **Group expiry** (``subscribe(idle_expiry=…)``, ``Capabilities.group_expiry``)
  → a new group's queues get ``x-expires``: RabbitMQ deletes each once it has
  had no consumer (nor a get or a redeclaration) that long, checked on a quorum
  queue's tick (every 5 s), so a little late. A partitioned group's members
  exchange is not durable and outlives it until the broker restarts (an
  exchange, not a queue: it holds nothing). A group
  found existing is joined as it is, expiring or not; one that another process
  declared meanwhile with other arguments (RabbitMQ refuses the redeclaration
  with ``PRECONDITION_FAILED``) too. The group's name in the groups queue is
  marked expiring, and whoever next deletes a group of the channel takes the
  names whose queues are gone out of it.
* **Message** → CloudEvents AMQP binding, binary mode: attributes in
  ``cloudEvents:<name>`` headers, ``content_type`` and ``message_id``
  properties, extra headers as they are, the payload as the body, so a plain
  AMQP client reads it (``cloudEvents_`` headers are read too). Messages are
  persistent.
* **Settling** → ack is ``basic.ack``; ``nack()`` is ``basic.nack`` with
  requeue, and the quorum queue counts it in ``x-delivery-count``, which gives
  ``attempt``. A requeued message goes behind the messages ready in its queue
  (RabbitMQ 3 quorum queues), while the messages of a closed AMQP channel go
  back in queue order; so after ``stop_intake`` (a graceful drain cancels the
  consumers first) a ``nack()`` without delay leaves the message unacked and the
  close returns it, ahead of the later messages of its key. Delayed
  redelivery, ``nack(delay=…)``, republishes the message
  (confirmed) to a shared *delay queue* and only then acks it: one quorum queue
  per step of a fixed delay ladder (the E12 series from 10 ms: twelve steps per
  decade, each at most 1.25x the one below; the delay is rounded *up*, and the
  top step, about 22.8 h, caps a longer one), whose ``x-message-ttl`` expires
  every message after that step and dead-letters it, at least once, through the
  default exchange back to the queue it came from. The attempt a republished
  message starts from travels in the ``seawall-attempt`` header.
* **Priority levels** (``ChannelSpec.priorities`` > 1, one partition) → the
  channel's queues are classic queues with ``x-max-priority`` (quorum queues
  have no priorities before RabbitMQ 4), which also write persistent messages
  to disk before confirming them; ``publish(priority=…)`` sets the AMQP
  priority (clamped by RabbitMQ to the channel's levels). Classic queues count
  no deliveries, so there ``nack()`` republishes the message (confirmed, with
  its attempt in ``seawall-attempt``) to come back after 10 ms, and a delivery
  returned by a close counts one attempt more however often it was returned.
* **Credit** → one AMQP channel per partition consumer, with ``basic.qos``
  ``prefetch`` (shared out among the partitions a member reads).
* **Bounded channels** → every queue has ``x-max-length`` with
  ``reject-publish``: a full queue makes RabbitMQ nack the publish, and the
  publisher tries again until ``publish_timeout``, then raises
  :class:`ChannelFull`. RabbitMQ counts *ready* messages only, so a group holds
  at most ``max_messages`` ready plus what its members have in flight. A
  publish refused by one group's full queue may already sit in the others'
  and is stored there again when retried (at least once).
* **Partitions** → each group partition queue has ``x-single-active-consumer``,
  so two members never read one partition at once, and members agree who reads
  what (:func:`seawall._transport.assignment.wanted`) through heartbeats on a fanout
  exchange per group (:mod:`._members`). A member hands a partition
  over only when it holds none of its messages.
* **Ephemeral channels** (reply inboxes) → one classic, non-durable,
  auto-delete queue ``seawall.<token>``, published to through the default
  exchange (no exchange of its own): a reply to an inbox that has gone is
  dropped by the broker at once, and the queue goes when its reader leaves or
  its connection dies. Its reader takes messages without acks (``no_ack``): a
  message left unacked could only go back to a queue that goes with that
  reader (one per inbox), so an ack would buy nothing but a frame per reply.
  ``ack()`` settles in the process, ``nack()`` puts the message back in front
  of the subscription (``attempt`` + 1), and ``prefetch`` still bounds the
  unsettled deliveries (what RabbitMQ sends beyond them waits in the process).
* **Delayed delivery** (``publish(not_before=…)``) uses the same ladder with
  delay queues of the channel's own (``seawall.<token>.delay.<step>ms``), which
  dead-letter into the channel's exchange under the partition key, so every
  group gets the message once it is due (rounded up to the next step). No
  plugin is assumed on the server. Reply inboxes take no delayed delivery.
* **Replay** (``FromOffsets``, ``FromTime``) is refused with
  :class:`~seawall.ConfigurationError`, and ``Capabilities.replay`` is False:
  a group's queue holds a message only from the moment the group exists and
  drops it once acked, so there is no log to start in. RabbitMQ 3.9+ has
  stream queues, readable over AMQP from an offset or a time
  (``x-stream-offset``), but a stream consumer cannot nack or requeue, gets
  no delivery count and does not compete with other consumers, and a group
  that read the stream up to a point and its queue after it could not find
  that point without a race (exchanges route to queues independently, so two
  queues may order concurrent publishes differently). Replay would need
  another model of this adapter (each channel a stream, groups keeping their
  offsets and redeliveries in seawall), not an addition to this one; the
  transports that replay are named in the error.
* **Durability** → quorum queues write and fsync a message before RabbitMQ
  confirms the publish: :attr:`Durability.LOCAL_FSYNC` on one node (a cluster
  of three nodes would replicate it; this adapter declares what one node
  gives).
* **Broken link** → subscriptions end with :class:`ConnectionLost` (the
  dispatcher subscribes again); the broker returns their unsettled messages
  (``attempt`` + 1). The next call connects again; publishing waits for the
  link up to ``publish_timeout``, then raises :class:`ConnectionLost`. A
  subscription whose consumer RabbitMQ cancels (its queue was deleted:
  subscribing again declares it anew) or whose AMQP channel it closes ends the
  same way; a publish that finds the channel's exchange deleted declares the
  channel again.

The tunables named above are :class:`~seawall.transports.RabbitMQOptions`,
given in code or in the URL's query
(``amqp://guest:guest@127.0.0.1:5672/?publish_timeout=5&name=orders``); the
query keys aio-pika reads itself (``heartbeat``, ``cafile``, …) are left for it.

Driver errors are translated at this edge by
:func:`seawall.transports.rabbitmq._topology.translated`. A cancelled
``declare``, ``delete`` or ``subscribe`` lets its requests to the broker finish
first (:mod:`._shield` says why: aiormq's answer to a cancelled request can
cost the whole connection), and each declaring operation has an AMQP channel
of its own (:mod:`._topology`).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, Unpack

from ..._clock import Clock, SystemClock
from ..._exceptions import (
    ChannelFull,
    ConfigurationError,
    ConnectionLost,
    MessageTooLarge,
    TransportClosed,
)
from ..._messages.envelope import Message, to_headers
from ..._transport import (
    MAX_PRIORITIES,
    Capabilities,
    ChannelSpec,
    Durability,
    Start,
    StartAt,
    fixed_start,
    is_reply_inbox,
    partition_for,
)
from ..._transport.publishing import until_stored

try:
    import aio_pika
    import aio_pika.abc
    import aiormq
    import aiormq.abc
    import aiormq.exceptions
    from pamqp import commands as spec
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    raise ConfigurationError(
        "the RabbitMQ transport needs the aio-pika client: pip install 'seawall[rabbitmq]'"
    ) from exc

from .._options import RabbitMQOptions, RabbitMQSettings
from ._layout import ATTEMPT, MAX_DELAY, Layout, delay_step, inbox_queue
from ._link import Link
from ._members import Membership
from ._shield import finished
from ._subscription import CE_PREFIX, RabbitMQSubscription, Source
from ._topology import Topology, translated

__all__ = ["RabbitMQOptions", "RabbitMQSubscription", "RabbitMQTransport"]

log = logging.getLogger("seawall.transports.rabbitmq")

_PERSISTENT = 2
_FRAME_OVERHEAD = 512  # method and content-header frames around the headers table


_NO_REPLAY = (
    "a RabbitMQ group's queue holds messages only from when the group was made, and not "
    "once acked, so there is no log to start in (see 'Replay' in "
    "seawall.transports.rabbitmq)"
)


class RabbitMQTransport:
    """A connection to a RabbitMQ broker; see the module docstring."""

    def __init__(
        self,
        url: str = "amqp://guest:guest@127.0.0.1:5672/",
        *,
        clock: Clock | None = None,
        options: RabbitMQOptions | Mapping[str, Any] | None = None,
        **settings: Unpack[RabbitMQSettings],
    ) -> None:
        chosen, url = RabbitMQOptions.resolve(options, url=url, settings=settings)
        self.options = chosen
        """What this transport runs with: ``options``, then the URL's query, then keywords."""
        self.url = url
        self.clock = clock or SystemClock()
        self.publish_timeout = chosen.publish_timeout
        self.connect_timeout = connect_timeout = chosen.connect_timeout
        self.lease = chosen.lease
        self.name = name = chosen.name
        self.topology = Topology(self)
        self._link = Link(url, name=name, connect_timeout=connect_timeout, broke=self._link_broke)
        self._vanished: set[str] = set()  # channels whose exchange was deleted behind our back
        self._layouts: dict[str, Layout] = {}
        self._declared: dict[str, ChannelSpec] = {}
        self._subs: set[RabbitMQSubscription] = set()
        self._closed = False
        self._capabilities = Capabilities(
            durability=Durability.LOCAL_FSYNC,
            partitions=True,
            delayed_redelivery=True,
            delayed_delivery=True,
            max_message_bytes=chosen.max_message_bytes,
            priorities=MAX_PRIORITIES,
            group_expiry=True,
        )

    @classmethod
    async def connect(
        cls, url: str = "amqp://guest:guest@127.0.0.1:5672/", **options: Any
    ) -> RabbitMQTransport:
        """A transport connected to ``url``; ``options`` are those of the constructor."""
        transport = cls(url, **options)
        await transport.connection()
        return transport

    @property
    def capabilities(self) -> Capabilities:
        return self._capabilities

    def _check_open(self) -> None:
        if self._closed:
            raise TransportClosed("the RabbitMQ transport is closed; connect a new one")

    # -- the link --------------------------------------------------------------
    async def connection(self) -> aio_pika.abc.AbstractConnection:
        """The AMQP connection, opened first if there is none."""
        self._check_open()
        return await self._link.connection()

    async def publisher(self) -> aiormq.abc.AbstractChannel:
        """The AMQP channel publishes go through (publisher confirms on)."""
        return await self._link.publisher()

    async def _link_broke(self, exc: BaseException | None) -> None:
        self.topology.forget()
        if self._closed:
            return
        log.warning("link to RabbitMQ broke (%r); %d subscription(s) end", exc, len(self._subs))
        for sub in list(self._subs):
            await sub.break_link(f"the link to RabbitMQ broke ({exc!r})")

    # -- channels ------------------------------------------------------------------
    def _ephemeral(self, channel: str) -> bool:
        spec = self._declared.get(channel)
        return is_reply_inbox(channel) or (spec is not None and spec.ephemeral)

    async def declare(self, spec: ChannelSpec) -> None:
        self._check_open()
        await finished(self._declare(spec))

    async def _declare(self, spec: ChannelSpec) -> None:
        self._declared.setdefault(spec.name, spec)
        if self._ephemeral(spec.name):
            await self.topology.inbox(spec.name)
        else:
            await self._layout(spec.name)

    async def delete(self, channel: str, *, group: str | None = None) -> None:
        self._check_open()
        await finished(self._delete(channel, group))

    async def _delete(self, channel: str, group: str | None) -> None:
        if self._ephemeral(channel):
            return  # a reply inbox's queue goes with its reader
        spec = self._declared.get(channel) or ChannelSpec(name=channel)
        layout = await self.topology.layout(spec, create=False)
        if layout is None:
            return
        if group is not None:
            await self.topology.delete_group(layout, group)
            return
        self._layouts.pop(channel, None)
        self._declared.pop(channel, None)
        await self.topology.delete_channel(layout)

    async def _layout(self, channel: str) -> Layout:
        layout = self._layouts.get(channel)
        if layout is None:
            spec = self._declared.get(channel) or ChannelSpec(name=channel)
            found = await finished(self.topology.layout(spec, repair=channel in self._vanished))
            self._vanished.discard(channel)
            assert found is not None
            layout = self._layouts[channel] = found
        return layout

    # -- publishing ----------------------------------------------------------------
    async def publish(
        self,
        channel: str,
        message: Message,
        *,
        not_before: float | None = None,
        priority: int = 0,
    ) -> None:
        self._check_open()
        wait = 0.0 if not_before is None else not_before - self.clock.time()
        headers: dict[str, Any] = to_headers(message, CE_PREFIX)
        content_type = headers.pop("content-type")
        self._check_size(channel, message, headers)
        ephemeral = self._ephemeral(channel)
        if wait > MAX_DELAY:
            raise ConfigurationError(
                f"cannot hold {message.type} ({message.id}) for {channel!r} back {wait:.0f} s: "
                f"the RabbitMQ transport delays by at most {MAX_DELAY:.0f} s; keep it in a "
                "scheduler (or the outbox) until it is nearer due"
            )
        if wait > 0 and ephemeral:
            raise ConfigurationError(
                f"cannot hold {message.type} ({message.id}) back for {channel!r}: it is a "
                "reply inbox, which takes no delayed delivery; send it when it is due"
            )
        properties = spec.Basic.Properties(
            content_type=content_type,
            headers=headers,
            message_id=message.id,
            delivery_mode=None if ephemeral else _PERSISTENT,
            priority=max(0, min(priority, MAX_PRIORITIES - 1)) if priority else None,
        )
        await self._send(channel, message, properties, ephemeral=ephemeral, wait=wait)

    def _check_size(self, channel: str, message: Message, headers: dict[str, Any]) -> None:
        size = _FRAME_OVERHEAD + len(message.data)
        size += sum(len(k.encode()) + len(str(v).encode()) + 6 for k, v in headers.items())
        limit = self._capabilities.max_message_bytes
        if limit is not None and size > limit:
            raise MessageTooLarge(
                f"message {message.id} ({message.type}) is {size} bytes with its headers, over "
                f"the RabbitMQ transport's {limit}-byte limit (max_message_bytes), for channel "
                f"{channel!r}; send a reference to the data instead"
            )

    async def _send(
        self,
        channel: str,
        message: Message,
        properties: spec.Basic.Properties,
        *,
        ephemeral: bool,
        wait: float,
    ) -> None:
        """Publish until RabbitMQ confirms, waiting for room and for the link."""

        async def attempt(left: float | None) -> bool | ChannelFull:
            sent = self._publish_once(channel, message, properties, ephemeral, wait)
            return await sent or self._full(channel)

        await until_stored(self.clock, self.publish_timeout, attempt)

    async def _publish_once(
        self,
        channel: str,
        message: Message,
        properties: spec.Basic.Properties,
        ephemeral: bool,
        wait: float,
    ) -> bool:
        """One try: whether RabbitMQ confirmed (False: a queue was full)."""
        if ephemeral:
            exchange, key = "", inbox_queue(channel)
        else:
            layout = await self._layout(channel)
            exchange = layout.exchange
            if wait > 0:  # held in the channel's delay queue for the next ladder step
                exchange = await self.topology.scheduled(layout, delay_step(wait))
            key = str(partition_for(message.partitionkey, layout.partitions))
        publisher = await self.publisher()
        with translated(f"publishing {message.id} to {channel!r}"):
            try:
                confirm = await publisher.basic_publish(
                    message.data, exchange=exchange, routing_key=key, properties=properties
                )
            except aiormq.exceptions.DeliveryError:
                return False  # nacked: a queue it routes to is full
            except aiormq.exceptions.ChannelNotFoundEntity:
                # its exchange was deleted behind our back: declare it again
                self._layouts.pop(channel, None)
                self._vanished.add(channel)
                raise ConnectionLost(f"channel {channel!r} vanished from RabbitMQ") from None
        return isinstance(confirm, spec.Basic.Ack)

    def _full(self, channel: str) -> ChannelFull:
        spec_ = self._declared.get(channel)
        bound = f"{spec_.max_messages} " if spec_ else ""
        return ChannelFull(
            f"channel {channel!r} has a group queue holding its bound of {bound}ready "
            f"messages, and none was taken within {self.publish_timeout} s; the consumers "
            "are behind: add consumers, raise max_messages, or retry later"
        )

    async def delay(
        self, msg: aiormq.abc.DeliveredMessage, queue: str, attempt: int, seconds: float
    ) -> None:
        """Republish a delivery to come back to ``queue`` after ``seconds`` (confirmed)."""
        exchange = await self.topology.delay(delay_step(seconds))
        old = msg.header.properties
        headers = {
            k: v for k, v in (old.headers or {}).items() if not k.startswith(("x-", ATTEMPT))
        }
        headers[ATTEMPT] = attempt
        properties = spec.Basic.Properties(
            content_type=old.content_type,
            headers=headers,
            message_id=old.message_id,
            delivery_mode=_PERSISTENT,
            priority=old.priority,
        )
        publisher = await self.publisher()
        with translated(f"delaying a message for {queue!r} by {seconds} s"):
            try:
                confirm = await publisher.basic_publish(
                    msg.body, exchange=exchange, routing_key=queue, properties=properties
                )
            except aiormq.exceptions.DeliveryError:
                confirm = None
        if not isinstance(confirm, spec.Basic.Ack):
            raise ConnectionLost(f"RabbitMQ refused to hold a message for {queue!r}")

    # -- subscribing -----------------------------------------------------------------
    async def subscribe(
        self,
        channel: str,
        *,
        group: str,
        prefetch: int = 64,
        start: Start = "earliest",
        idle_expiry: float | None = None,
    ) -> RabbitMQSubscription:
        self._check_open()
        at = fixed_start(start, "RabbitMQ", _NO_REPLAY)
        if prefetch < 1:
            raise ValueError(f"prefetch must be at least 1, got {prefetch}")
        joining = self._subscribe(channel, group, prefetch, at, idle_expiry)
        return await finished(joining, undo=RabbitMQSubscription.close)

    async def _subscribe(
        self, channel: str, group: str, prefetch: int, at: StartAt, idle_expiry: float | None
    ) -> RabbitMQSubscription:
        """subscribe(), once the arguments are checked; see :mod:`._shield` for why apart."""
        if self._ephemeral(channel):
            queue = await self.topology.inbox(channel)
            sub = RabbitMQSubscription(self, channel, group, [queue], prefetch)
            sub.unacked = True  # see "Ephemeral channels" in the module docstring
            self._subs.add(sub)
            await self._start(sub, [Source(queue, 0, prefetch)])
            return sub
        layout = await self._layout(channel)
        spec_ = self._declared.get(channel) or ChannelSpec(name=channel)
        queues = await self.topology.group(layout, group, spec_.max_messages, idle_expiry)
        sub = RabbitMQSubscription(self, channel, group, queues, prefetch)
        sub.counts_returns = layout.priorities == 1  # classic queues have no delivery count
        self._subs.add(sub)
        sources = [Source(layout.unclaimed, None, prefetch)] if at == "earliest" else []
        if layout.partitions == 1:
            sources.append(Source(queues[0], 0, prefetch))
            await self._start(sub, sources)
        else:
            await self._start(sub, sources)
            sub.membership = Membership(sub, layout)
            try:
                await sub.membership.join()
            except BaseException:
                await sub.close()
                raise
        return sub

    async def _start(self, sub: RabbitMQSubscription, sources: list[Source]) -> None:
        try:
            for source in sources:
                await sub.read(source)
        except BaseException:
            await sub.close()
            raise

    def _left(self, sub: RabbitMQSubscription) -> None:
        self._subs.discard(sub)

    async def drop_connection_for_tests(self) -> None:
        """Cut the TCP connection under aiormq, as a network failure would."""
        self._check_open()
        await self._link.drop_for_tests()

    async def close(self) -> None:
        if self._closed:
            return
        for sub in list(self._subs):
            await sub.close()
        self._closed = True
        await self.topology.close()
        await self._link.close()
