"""The NATS JetStream transport (``nats://host:port``), over nats-py.

How the transport model (see :mod:`seawall._transport`) maps onto JetStream:

* **Channel** → one stream per channel, named ``SEAWALL_<token>``, with one
  subject per partition, ``seawall.<token>.<partition>``; ``<token>`` is the
  channel name made name-safe by :func:`seawall._assignment.token` (``orders``
  stays ``orders``, ``orders.events`` becomes ``orders_2eevents``). File
  storage, limits retention, ``max_msgs = ChannelSpec.max_messages`` with
  ``discard=new``: a full stream refuses a publish, never drops a stored
  message. Limits retention keeps settled messages, so a publisher that meets
  a full stream purges, per partition subject, what every group has acked (the
  lowest ack floor of the stream's consumers; nothing while no group exists)
  and tries again, waiting up to ``publish_timeout`` before :class:`ChannelFull`.
  A new channel has the partitions it was declared with; its partition count
  is read back from the stream's subjects by every process.
* **Message** → CloudEvents binary mode: attributes in ``ce-`` headers,
  ``content-type``, extra headers as they are, the payload as the body, so a
  plain NATS client reads it. ``Nats-Msg-Id`` is the message id: a publish
  retried after a lost acknowledgement is stored once (2-minute window).
* **Group** → one durable pull consumer per partition (``<group token>``, or
  ``<group token>_p<n>`` with several partitions): explicit ack, ``AckWait`` =
  ``ack_wait``, ``MaxDeliver`` unlimited (the dead-letter decision is the
  dispatcher's), ``MaxAckPending`` = ``max_ack_pending`` for the whole group as
  a backstop. Each subscription bounds its own deliveries by pull credit: it
  asks for at most ``prefetch`` messages, minus those it holds, in pull
  requests that expire after ``pull_expires`` and are renewed. ``attempt`` is
  JetStream's delivery count; ``nack(delay)`` is a NAK with that delay. A
  delivery held longer than ``ack_wait / 2`` is kept alive with an in-progress
  ack, so slow handlers and queued deliveries are not redelivered behind
  their back.
* **Close / broken link** → unsettled and received-but-unread deliveries are
  NAKed at once (on a broken link the NAKs go out as soon as nats-py has
  reconnected), so they come again within a round trip, not after AckWait; if
  this process dies instead, they come again after ``ack_wait``. nats-py
  reconnects by itself (forever, every ``reconnect_wait``); open
  subscriptions end with :class:`ConnectionLost` and the dispatcher subscribes
  again, which waits for the link. Publishing waits for the link up to
  ``publish_timeout``, then raises :class:`ConnectionLost`.
* **Partitions** → each partition of a group is owned by one member at a
  time. Members hold a lease in the KV bucket ``seawall_leases``
  (``<stream>.<group>.m.<member>``, renewed every third of the bucket's TTL,
  ``lease`` when this transport creates it) and own partition ``p`` through a
  lock key ``<stream>.<group>.p.<p>`` created with compare-and-set, so two
  members never pull one partition at once. Who should own what follows
  :func:`seawall._assignment.wanted`; a member that should give a partition
  up stops pulling it, waits until it holds none of its messages, and only
  then deletes the lock. A member that dies loses its locks when their TTL
  runs out; its unsettled messages come again after ``ack_wait``, possibly
  after later messages of their keys that the new owner took meanwhile.
* **Ephemeral channels** (reply inboxes) → a memory-storage stream (one
  replica) read the same way, deleted when its subscription closes. Publishes
  to a missing channel whose name starts with ``_inbox.`` are dropped (its
  requester has gone), where any other channel is created on first use. A
  process that dies leaves its inbox stream behind (empty once read).
* **Delayed delivery** (``publish(not_before=…)``) has no JetStream equivalent
  in the servers this supports, so ``delayed_delivery`` is False; delayed
  redelivery (``nack(delay=…)``) is native.
* **Durability**: JetStream acknowledges a publish once the stream leader
  (and, with ``replicas`` ≥ 3, a quorum) has written it, and fsyncs later
  unless the server runs with ``sync_interval: always``:
  :attr:`Durability.WRITTEN`, or :attr:`Durability.REPLICATED` with
  ``replicas`` ≥ 3.

Driver errors are translated at this edge by :func:`_translated`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections import Counter, deque
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, replace
from typing import Any

from .._assignment import Leases, token, wanted
from .._clock import Clock, SystemClock, Timer
from .._exceptions import (
    ChannelFull,
    ConfigurationError,
    ConnectionLost,
    DecodeError,
    MessageTooLarge,
    TransportClosed,
    TransportError,
)
from .._ids import uuid7
from .._message import Message, from_headers, to_headers
from .._transport import Capabilities, ChannelSpec, Delivery, Durability, StartAt, partition_for

try:
    import nats
    import nats.errors
    import nats.js.errors
    from nats.aio.client import Client
    from nats.aio.msg import Msg
    from nats.aio.subscription import Subscription as NatsSubscriptionHandle
    from nats.js import api
    from nats.js.client import JetStreamContext
    from nats.js.kv import KeyValue
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    raise ConfigurationError(
        "the NATS transport needs the nats-py client: pip install 'seawall[nats]'"
    ) from exc

__all__ = ["NatsSubscription", "NatsTransport"]

log = logging.getLogger("seawall.transports.nats")

LEASE_BUCKET = "seawall_leases"
_STREAM_PREFIX = "SEAWALL_"
_GONE_WHEN_MISSING = "_inbox."  # reply inboxes: never created by a publish
_MAX_MESSAGES_EXCEEDED = 10077  # JetStream error code of a full discard=new stream
_MSG_ID = "Nats-Msg-Id"
_STATUS = "Status"
_PENDING = "Nats-Pending-Messages"
_HEADER_OVERHEAD = len(b"NATS/1.0\r\n\r\n")
_DEFAULT_MAX_PAYLOAD = 1 << 20  # the server default, until its INFO tells


@contextlib.contextmanager
def _translated(what: str) -> Iterator[None]:
    """Raise nats-py errors met while doing ``what`` as seawall errors."""
    try:
        yield
    except nats.errors.ConnectionClosedError as exc:
        raise TransportClosed(
            f"{what}: the NATS connection is closed; connect a new transport"
        ) from exc
    except (
        nats.errors.TimeoutError,
        nats.errors.NoRespondersError,
        nats.errors.OutboundBufferLimitError,
        nats.js.errors.NoStreamResponseError,
        nats.js.errors.ServiceUnavailableError,
    ) as exc:
        raise ConnectionLost(
            f"{what}: NATS JetStream did not answer ({type(exc).__name__}); the server is down, "
            "unreachable or electing a leader: retry once it is back"
        ) from exc
    except nats.js.errors.APIError as exc:
        raise TransportError(f"{what}: NATS JetStream refused: {exc}") from exc
    except nats.errors.Error as exc:
        raise TransportError(f"{what}: NATS client error: {exc!r}") from exc


@dataclass(frozen=True, slots=True)
class _Stream:
    channel: str
    name: str
    partitions: int
    ephemeral: bool

    def subject(self, partition: int) -> str:
        return f"seawall.{self.name.removeprefix(_STREAM_PREFIX)}.{partition}"


class NatsTransport:
    """A connection to a NATS server with JetStream; see the module docstring."""

    def __init__(
        self,
        url: str = "nats://127.0.0.1:4222",
        *,
        clock: Clock | None = None,
        publish_timeout: float | None = 30.0,
        ack_wait: float = 30.0,
        pull_expires: float = 5.0,
        lease: float = 3.0,
        replicas: int = 1,
        max_ack_pending: int = 20_000,
        api_timeout: float = 2.0,
        reconnect_wait: float = 0.25,
        connect_timeout: float = 2.0,
        name: str = "seawall",
    ) -> None:
        self.url = url
        self.clock = clock or SystemClock()
        self.publish_timeout = publish_timeout
        self.ack_wait = ack_wait
        self.pull_expires = pull_expires
        self.lease = lease
        self.replicas = replicas
        self.max_ack_pending = max_ack_pending
        self.api_timeout = api_timeout
        self._options = {
            "name": name,
            "reconnect_time_wait": reconnect_wait,
            "connect_timeout": connect_timeout,
        }
        self._client: Client | None = None
        self._js: JetStreamContext | None = None
        self._connecting = asyncio.Lock()
        self._broke = asyncio.Event()  # set when nats-py reports a lost link
        self._streams: dict[str, _Stream] = {}
        self._declared: dict[str, ChannelSpec] = {}
        self._subs: set[NatsSubscription] = set()
        self._kv: KeyValue | None = None
        self._closed = False
        durable = Durability.REPLICATED if replicas >= 3 else Durability.WRITTEN
        self._capabilities = Capabilities(
            durability=durable,
            partitions=True,
            delayed_redelivery=True,
            delayed_delivery=False,
            max_message_bytes=_DEFAULT_MAX_PAYLOAD,
        )

    @classmethod
    async def connect(cls, url: str = "nats://127.0.0.1:4222", **options: Any) -> NatsTransport:
        """A transport connected to ``url``; ``options`` are those of the constructor.

        The constructor alone connects on first use, as ``seawall.transports.connect`` does.
        """
        transport = cls(url, **options)
        await transport.link()
        return transport

    async def link(self) -> JetStreamContext:
        """The JetStream context, connecting first if this transport has not yet."""
        self._check_open()
        if self._js is None:
            async with self._connecting:
                if self._js is None:
                    self._client = await self._open()
                    self._capabilities = replace(
                        self._capabilities, max_message_bytes=self._client.max_payload
                    )
                    self._js = self._client.jetstream(timeout=self.api_timeout)
        return self._js

    @property
    def client(self) -> Client:
        """The nats-py client (once connected)."""
        assert self._client is not None, "the NATS transport has not connected yet"
        return self._client

    async def _open(self) -> Client:
        async def disconnected() -> None:
            await self._link_broke()

        async def error(exc: Exception) -> None:
            log.debug("nats-py reported %r", exc)

        try:
            return await nats.connect(
                self.url.split(","),
                max_reconnect_attempts=-1,
                disconnected_cb=disconnected,
                error_cb=error,
                **self._options,
            )
        except (OSError, nats.errors.Error) as exc:
            raise ConnectionLost(
                f"cannot connect to NATS at {self.url} ({exc!r}); is nats-server running there "
                "with JetStream enabled (-js)?"
            ) from exc

    @property
    def capabilities(self) -> Capabilities:
        return self._capabilities

    def _check_open(self) -> None:
        if self._closed:
            raise TransportClosed("the NATS transport is closed; connect a new one")

    # -- channels ------------------------------------------------------------
    async def declare(self, spec: ChannelSpec) -> None:
        self._check_open()
        self._declared.setdefault(spec.name, spec)
        if spec.name not in self._streams:
            self._streams[spec.name] = await self._ensure(spec)

    async def _stream(self, channel: str, *, create: bool = True) -> _Stream | None:
        stream = self._streams.get(channel)
        if stream is None:
            spec = self._declared.get(channel) or ChannelSpec(name=channel)
            stream = await self._ensure(spec, create=create)
            if stream is not None:
                self._streams[channel] = stream
        return stream

    async def _ensure(self, spec: ChannelSpec, *, create: bool = True) -> Any:
        name = _STREAM_PREFIX + token(spec.name)
        js = await self.link()
        with _translated(f"declaring channel {spec.name!r} (stream {name})"):
            try:
                info = await js.stream_info(name)
            except nats.js.errors.NotFoundError:
                if not create:
                    return None
                info = await js.add_stream(self._stream_config(spec, name))
        config = info.config
        return _Stream(
            channel=spec.name,
            name=name,
            partitions=len(config.subjects or ()),
            ephemeral=config.storage == api.StorageType.MEMORY,
        )

    def _stream_config(self, spec: ChannelSpec, name: str) -> api.StreamConfig:
        if spec.partitions < 1:
            raise ConfigurationError(
                f"channel {spec.name!r} needs at least one partition, got {spec.partitions}"
            )
        tok = name.removeprefix(_STREAM_PREFIX)
        return api.StreamConfig(
            name=name,
            description=f"seawall channel {spec.name}",
            subjects=[f"seawall.{tok}.{p}" for p in range(spec.partitions)],
            retention=api.RetentionPolicy.LIMITS,
            discard=api.DiscardPolicy.NEW,
            max_msgs=spec.max_messages,
            storage=api.StorageType.MEMORY if spec.ephemeral else api.StorageType.FILE,
            num_replicas=1 if spec.ephemeral else self.replicas,
        )

    async def _forget(self, stream: _Stream) -> None:
        """Delete an ephemeral channel's stream once its subscriber has left."""
        self._streams.pop(stream.channel, None)
        js = await self.link()
        with (
            contextlib.suppress(TransportError),
            _translated(f"deleting reply inbox {stream.channel!r}"),
        ):
            await js.delete_stream(stream.name)

    # -- publishing ------------------------------------------------------------
    async def publish(
        self, channel: str, message: Message, *, not_before: float | None = None
    ) -> None:
        self._check_open()
        if not_before is not None and not_before > self.clock.time():
            raise ConfigurationError(
                f"cannot hold {message.type} ({message.id}) for {channel!r} back until a "
                "given time: NATS JetStream has no delayed delivery (capabilities."
                "delayed_delivery is False); schedule it before publishing"
            )
        stream = await self._stream(channel, create=not channel.startswith(_GONE_WHEN_MISSING))
        if stream is None:
            log.debug("dropped %s for %s: that reply inbox has gone", message.id, channel)
            return
        headers = to_headers(message)
        headers[_MSG_ID] = message.id
        self._check_size(channel, message, headers)
        subject = stream.subject(partition_for(message.partitionkey, stream.partitions))
        await self._send(stream, subject, message, headers)

    def _check_size(self, channel: str, message: Message, headers: dict[str, str]) -> None:
        size = _HEADER_OVERHEAD + len(message.data)
        size += sum(len(k.encode()) + len(v.encode()) + 4 for k, v in headers.items())
        limit = self._capabilities.max_message_bytes
        if limit is not None and size > limit:
            raise MessageTooLarge(
                f"message {message.id} ({message.type}) is {size} bytes with its headers, over "
                f"the NATS server's {limit}-byte max_payload, for channel {channel!r}; send a "
                "reference to the data instead"
            )

    async def _send(
        self, stream: _Stream, subject: str, message: Message, headers: dict[str, str]
    ) -> None:
        """Publish until JetStream acknowledges, waiting for room and for the link."""
        clock = self.clock
        deadline = None if self.publish_timeout is None else clock.time() + self.publish_timeout
        pause = 0.005
        while True:
            failure: TransportError
            try:
                if await self._publish_once(stream, subject, message, headers):
                    return
                failure = self._full(stream)
                if await self._trim(stream):
                    continue
            except ConnectionLost as exc:
                failure = exc
            if deadline is not None:
                if clock.time() >= deadline:
                    raise failure
                pause = min(pause, deadline - clock.time())
            await clock.sleep(pause)
            pause = min(pause * 2, 0.2)

    async def _publish_once(
        self, stream: _Stream, subject: str, message: Message, headers: dict[str, str]
    ) -> bool:
        """One try: True once stored, False if the stream is full."""
        js = await self.link()
        with _translated(f"publishing {message.id} to {stream.channel!r}"):
            try:
                await js.publish(subject, message.data, headers=headers)
            except nats.js.errors.APIError as exc:
                if exc.err_code == _MAX_MESSAGES_EXCEEDED:
                    return False
                raise
        return True

    def _full(self, stream: _Stream) -> ChannelFull:
        spec = self._declared.get(stream.channel)
        bound = f"{spec.max_messages} " if spec else ""
        return ChannelFull(
            f"channel {stream.channel!r} (stream {stream.name}) holds its bound of {bound}"
            f"messages not yet settled by every group, and none was settled within "
            f"{self.publish_timeout} s; the consumers are behind: add consumers, raise "
            "max_messages, or retry later"
        )

    async def _trim(self, stream: _Stream) -> int:
        """Purge, per partition subject, what every group has acked; how many went."""
        js = await self.link()
        with _translated(f"trimming channel {stream.channel!r}"):
            consumers = await js.consumers_info(stream.name)
            floors: dict[str, int] = {}
            for info in consumers:
                subject = info.config.filter_subject or stream.subject(0)
                floor = info.ack_floor.stream_seq if info.ack_floor else 0
                floors[subject] = min(floors.get(subject, floor), floor)
            if not any(floors.values()):
                return 0
            before = (await js.stream_info(stream.name)).state.messages
            for subject, floor in floors.items():
                if floor > 0:
                    await js.purge_stream(stream.name, seq=floor + 1, subject=subject)
            after = (await js.stream_info(stream.name)).state.messages
        return int(before - after)

    # -- subscribing -----------------------------------------------------------
    async def subscribe(
        self, channel: str, *, group: str, prefetch: int = 64, start: StartAt = "earliest"
    ) -> NatsSubscription:
        self._check_open()
        if prefetch < 1:
            raise ValueError(f"prefetch must be at least 1, got {prefetch}")
        stream = await self._stream(channel)
        assert stream is not None
        consumers = [
            await self._consumer(stream, group, p, start) for p in range(stream.partitions)
        ]
        kv = await self._lease_bucket() if stream.partitions > 1 else None
        sub = NatsSubscription(self, stream, group, consumers, prefetch, kv)
        self._subs.add(sub)
        await sub.start()
        return sub

    async def _consumer(self, stream: _Stream, group: str, partition: int, start: StartAt) -> str:
        name = token(group)
        if stream.partitions > 1:
            name = f"{name}_p{partition}"
        config = api.ConsumerConfig(
            durable_name=name,
            ack_policy=api.AckPolicy.EXPLICIT,
            ack_wait=self.ack_wait,
            max_deliver=-1,
            max_ack_pending=self.max_ack_pending,
            filter_subject=stream.subject(partition),
            deliver_policy=api.DeliverPolicy.NEW if start == "latest" else api.DeliverPolicy.ALL,
            inactive_threshold=3600.0 if stream.ephemeral else None,
        )
        js = await self.link()
        with _translated(f"joining group {group!r} on channel {stream.channel!r}"):
            try:
                await js.consumer_info(stream.name, name)
            except nats.js.errors.NotFoundError:
                await js.add_consumer(stream.name, config)
        return name

    async def _lease_bucket(self) -> KeyValue:
        if self._kv is None:
            js = await self.link()
            with _translated(f"opening the lease bucket {LEASE_BUCKET}"):
                try:
                    self._kv = await js.key_value(LEASE_BUCKET)
                except nats.js.errors.BucketNotFoundError:
                    self._kv = await js.create_key_value(
                        bucket=LEASE_BUCKET, history=1, ttl=self.lease
                    )
        return self._kv

    def _left(self, sub: NatsSubscription) -> None:
        self._subs.discard(sub)

    async def _link_broke(self) -> None:
        self._broke.set()
        if self._closed:
            return
        log.warning("link to NATS broke; %d subscription(s) end", len(self._subs))
        for sub in list(self._subs):
            await sub.break_link()

    async def drop_connection_for_tests(self) -> None:
        """Cut the TCP connection under nats-py, as a network failure would."""
        transport = getattr(self.client, "_transport", None)
        writer = getattr(transport, "_io_writer", None)
        assert writer is not None, "nats-py changed: no socket to cut"
        self._broke.clear()
        writer.transport.abort()
        async with asyncio.timeout(5.0):
            await self._broke.wait()

    async def close(self) -> None:
        if self._closed:
            return
        for sub in list(self._subs):
            await sub.close()
        self._closed = True
        with contextlib.suppress(nats.errors.Error, OSError, asyncio.TimeoutError):
            await self.client.flush(timeout=int(self.api_timeout) or 1)
        await self.client.close()


@dataclass(slots=True)
class _Held:
    msg: Msg
    partition: int
    touched: float


class _Puller:
    """Pull requests for one partition's consumer, and the messages they bring.

    Messages arrive under their stream subject, so they cannot be told apart by
    request; ``outstanding`` counts what was asked for and has not come, and a
    request's end (status 408 or 409) says how many of it never will.
    """

    def __init__(self, sub: NatsSubscription, partition: int, consumer: str) -> None:
        self.sub = sub
        self.partition = partition
        self.inbox = sub.transport.client.new_inbox()
        self.next_subject = f"$JS.API.CONSUMER.MSG.NEXT.{sub.stream.name}.{consumer}"
        self.outstanding = 0
        self.requests: dict[str, float] = {}  # reply subject -> when the server must be done
        self.handle: NatsSubscriptionHandle | None = None
        self._count = 0

    async def start(self) -> None:
        client = self.sub.transport.client
        self.handle = await client.subscribe(f"{self.inbox}.*", cb=self._arrived)

    async def request(self, count: int, now: float) -> None:
        transport = self.sub.transport
        self._count += 1
        reply = f"{self.inbox}.{self._count}"
        expires = transport.pull_expires
        self.requests[reply] = now + expires + transport.api_timeout
        self.outstanding += count
        body = json.dumps({"batch": count, "expires": int(expires * 1e9)}).encode()
        await transport.client.publish(self.next_subject, body, reply=reply)

    def sweep(self, now: float) -> float | None:
        """Forget requests past their deadline (the server lost them); the next deadline."""
        for reply in [r for r, due in self.requests.items() if due <= now]:
            del self.requests[reply]
        if not self.requests:
            self.outstanding = 0
        return min(self.requests.values(), default=None)

    async def _arrived(self, msg: Msg) -> None:
        status = msg.headers.get(_STATUS) if msg.headers else None
        if status is None:
            self.outstanding = max(0, self.outstanding - 1)
            self.sub.arrived(msg, self.partition)
        elif status != "100":  # 408 expired, 409 ended early; 100 is a heartbeat
            assert msg.headers is not None
            if self.requests.pop(msg.subject, None) is not None:
                pending = int(msg.headers.get(_PENDING, "0") or 0)
                self.outstanding = 0 if not self.requests else max(0, self.outstanding - pending)
            self.sub.wake.set()

    async def stop(self) -> None:
        """Stop pulling; messages already on their way still arrive before this returns."""
        handle, self.handle = self.handle, None
        self.requests.clear()
        self.outstanding = 0
        if handle is not None:
            with contextlib.suppress(nats.errors.Error):
                if self.sub.transport.client.is_connected:
                    await handle.drain()  # type: ignore[no-untyped-call]
                else:
                    await handle.unsubscribe()


class NatsSubscription:
    """One member of a group on a JetStream channel."""

    def __init__(
        self,
        transport: NatsTransport,
        stream: _Stream,
        group: str,
        consumers: list[str],
        prefetch: int,
        kv: KeyValue | None,
    ) -> None:
        self.transport = transport
        self.stream = stream
        self.group = group
        self.prefetch = prefetch
        self.consumers = consumers
        self.member = uuid7()
        self.wake = asyncio.Event()
        self.pullers: dict[int, _Puller] = {}
        self.held: Counter[int] = Counter()  # partition -> received and not settled
        self._ready: deque[_Held] = deque()
        self._unsettled: dict[str, _Held] = {}  # by ack subject
        self._state = "open"  # open | closed | broken
        self._owner = _Ownership(self, kv) if kv is not None else None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        if self._owner is None:
            await self.take(0)
        else:
            await self._owner.join()
            self._task = asyncio.get_running_loop().create_task(self._own(self._owner))

    async def _own(self, owner: _Ownership) -> None:
        """Keep the partition ownership going; if it fails, the subscription breaks."""
        try:
            await owner.run()
        except Exception as exc:
            log.warning("partition ownership of %s failed (%r); subscription ends", owner.me, exc)
            await self._end("broken")

    # -- partitions ----------------------------------------------------------
    async def take(self, partition: int) -> None:
        if self._state != "open":
            return
        puller = _Puller(self, partition, self.consumers[partition])
        self.pullers[partition] = puller
        with _translated(f"pulling from channel {self.stream.channel!r}"):
            await puller.start()
        self.wake.set()

    async def release(self, partition: int) -> bool:
        """Stop pulling ``partition``; whether none of its messages is held any more."""
        puller = self.pullers.pop(partition, None)
        if puller is not None:
            await puller.stop()
        return self.held[partition] == 0

    # -- deliveries ------------------------------------------------------------
    def arrived(self, msg: Msg, partition: int) -> None:
        if self._state != "open":
            return  # NAKed below or by close: do not hold it
        self.held[partition] += 1
        self._ready.append(_Held(msg, partition, self.transport.clock.time()))
        self.wake.set()

    def __aiter__(self) -> AsyncIterator[Delivery]:
        return self._deliveries()

    async def _deliveries(self) -> AsyncIterator[Delivery]:
        while True:
            if self._state == "broken":
                raise ConnectionLost(
                    f"link to NATS broke while reading channel {self.stream.channel!r} as "
                    f"group {self.group!r}; subscribe again"
                )
            if self._state == "closed":
                return
            if self._ready and len(self._unsettled) < self.prefetch:
                held = self._ready.popleft()
                held.touched = self.transport.clock.time()
                self._unsettled[held.msg.reply] = held
                yield self._delivery(held)
                continue
            self.wake.clear()
            await self._refill()
            await self._wait()

    def _delivery(self, held: _Held) -> Delivery:
        msg = held.msg
        return Delivery(
            message=_decode(msg),
            channel=self.stream.channel,
            partition=held.partition,
            attempt=msg.metadata.num_delivered,
            token=msg.reply,
        )

    async def _refill(self) -> None:
        """Ask each owned partition for as many messages as its share of credit allows."""
        if self._state != "open" or not self.pullers:
            return
        share = max(1, self.prefetch // len(self.pullers))
        now = self.transport.clock.time()
        for p, puller in list(self.pullers.items()):
            want = share - self.held[p] - puller.outstanding
            if want > 0 and (not puller.requests or want >= max(1, share // 4)):
                with _translated(f"pulling from channel {self.stream.channel!r}"):
                    await puller.request(want, now)

    async def _wait(self) -> None:
        """Sleep until woken, a pull request is overdue or a held delivery needs a keepalive."""
        clock = self.transport.clock
        now = clock.time()
        dues = [due for p in self.pullers.values() if (due := p.sweep(now)) is not None]
        keepalive = self.transport.ack_wait / 2
        if self._unsettled:
            oldest = min(h.touched for h in self._unsettled.values())
            if now - oldest >= keepalive:
                await self._keep_alive(now - keepalive)
                return
            dues.append(oldest + keepalive)
        timer: Timer | None = clock.call_at(min(dues), self.wake.set) if dues else None
        try:
            await self.wake.wait()
        finally:
            if timer is not None:
                timer.cancel()

    async def _keep_alive(self, older_than: float) -> None:
        now = self.transport.clock.time()
        for held in list(self._unsettled.values()):
            if held.touched <= older_than:
                held.touched = now
                with contextlib.suppress(nats.errors.Error):
                    await held.msg.in_progress()

    async def ack(self, delivery: Delivery) -> None:
        held = self._settle(delivery)
        if held is not None:
            with contextlib.suppress(nats.errors.Error):
                await held.msg.ack()
            await self._settled(held)

    async def nack(self, delivery: Delivery, *, delay: float = 0.0) -> None:
        held = self._settle(delivery)
        if held is not None:
            with contextlib.suppress(nats.errors.Error):
                await held.msg.nak(delay=delay if delay > 0 else None)
            await self._settled(held)

    def _settle(self, delivery: Delivery) -> _Held | None:
        assert isinstance(delivery.token, str)
        return self._unsettled.pop(delivery.token, None)

    async def _settled(self, held: _Held) -> None:
        self.held[held.partition] -= 1
        if held.partition not in self.pullers and self._owner is not None:
            self._owner.changed.set()  # a partition being handed over may now be free
        self.wake.set()

    async def _return_all(self) -> None:
        """NAK everything held, so it comes again at once to some member."""
        held = [*self._unsettled.values(), *self._ready]
        self._unsettled.clear()
        self._ready.clear()
        for item in held:
            with contextlib.suppress(nats.errors.Error):
                await item.msg.nak()
        self.held.clear()

    async def _end(self, state: str) -> None:
        self._state = state
        self.wake.set()
        self.transport._left(self)
        await self._return_all()
        for partition in list(self.pullers):
            await self.release(partition)
        if self._owner is not None:
            self._owner.stop()

    async def break_link(self) -> None:
        if self._state == "open":
            await self._end("broken")

    async def close(self) -> None:
        if self._state == "open":
            await self._end("closed")
        if self._task is not None:
            # It stops by itself within a round trip; cancelling is the fallback, not
            # the way, since Python 3.11's wait_for (inside nats-py) can swallow a
            # cancellation that meets a reply, and a TaskGroup passes it on only once.
            await asyncio.wait({self._task}, timeout=2 * self.transport.api_timeout)
            self._task.cancel()
            self._task = None
            assert self._owner is not None
            await self._owner.leave()
        if self.stream.ephemeral:
            await self.transport._forget(self.stream)


def _decode(msg: Msg) -> Message:
    headers = dict(msg.headers or {})
    headers.pop(_MSG_ID, None)
    try:
        return from_headers(headers, msg.data)
    except DecodeError as exc:
        # Not a seawall message (no CloudEvents headers): handed on under a type no
        # handler has, so the dispatcher dead-letters it with the reason instead of losing it.
        meta = msg.metadata
        return Message(
            id=f"nats-{meta.stream}-{meta.sequence.stream}",
            type="seawall.nats.Undecodable",
            source=f"nats:{msg.subject}",
            data=msg.data,
            headers={**headers, "seawall-decode-error": str(exc)},
        )


class _Ownership:
    """Which partitions of a channel this member pulls, agreed through KV leases and locks."""

    def __init__(self, sub: NatsSubscription, kv: KeyValue) -> None:
        self.sub = sub
        self.kv = kv
        self.prefix = f"{sub.stream.name}.{token(sub.group)}"
        self.me = sub.member
        self.leases = Leases(sub.transport.lease)
        self.locks: dict[int, int] = {}  # partition -> revision of our lock
        self.changed = asyncio.Event()
        self.stopped = False
        self._watcher: KeyValue.KeyWatcher | None = None

    def _lock(self, partition: int) -> str:
        return f"{self.prefix}.p.{partition}"

    async def join(self) -> None:
        with _translated(f"reading the lease bucket {LEASE_BUCKET}"):
            status = await self.kv.status()
        if status.ttl:
            self.leases = Leases(status.ttl)
        await self._renew()
        await self._rebalance()  # a member alone owns every partition before subscribe returns

    async def run(self) -> None:
        """Follow leases and locks until :meth:`stop`."""
        watcher = self._watcher = await self.kv.watch(f"{self.prefix}.>")
        if self.stopped:
            return
        try:
            async with asyncio.TaskGroup() as tasks:
                tasks.create_task(self._listen(watcher))
                tasks.create_task(self._steer())
        finally:
            await self._unwatch()

    def stop(self) -> None:
        """Ask :meth:`run` to end; it does within a quarter second or one broker round trip."""
        self.stopped = True
        self.changed.set()

    async def _unwatch(self) -> None:
        watcher, self._watcher = self._watcher, None
        if watcher is not None:
            with contextlib.suppress(nats.errors.Error):
                await watcher.stop()  # type: ignore[no-untyped-call]

    async def _listen(self, watcher: KeyValue.KeyWatcher) -> None:
        while not self.stopped:
            try:
                entry = await watcher.updates(timeout=0.25)  # type: ignore[no-untyped-call]
            except nats.errors.TimeoutError:
                continue
            if entry is None:
                continue
            kind, _, who = entry.key.removeprefix(f"{self.prefix}.").partition(".")
            if kind == "m" and entry.operation is None:
                self.leases.heard(who, self.sub.transport.clock.time())
            elif kind == "m":
                self.leases.left(who)
            self.changed.set()

    async def _steer(self) -> None:
        clock = self.sub.transport.clock
        every = self.leases.ttl / 3
        renew_at = clock.time() + every
        while not self.stopped:
            self.changed.clear()
            if clock.time() >= renew_at:
                await self._renew()
                renew_at = clock.time() + every
            await self._rebalance()
            timer = clock.call_at(renew_at, self.changed.set)
            try:
                await self.changed.wait()
            finally:
                timer.cancel()

    async def _renew(self) -> None:
        with _translated(f"renewing the lease of {self.me}"):
            await self.kv.put(f"{self.prefix}.m.{self.me}", b"")
        self.leases.heard(self.me, self.sub.transport.clock.time())
        for partition, revision in list(self.locks.items()):
            try:
                self.locks[partition] = await self.kv.update(
                    self._lock(partition), self.me.encode(), last=revision
                )
            except nats.js.errors.KeyWrongLastSequenceError:
                log.warning("%s lost partition %d: its lock ran out", self.me, partition)
                del self.locks[partition]
                await self.sub.release(partition)

    async def _rebalance(self) -> None:
        live = self.leases.live(self.sub.transport.clock.time())
        mine = wanted(self.me, live, self.sub.stream.partitions)
        for partition in sorted(set(self.locks) - mine):
            if await self.sub.release(partition):
                with _translated(f"handing partition {partition} over"):
                    await self.kv.delete(self._lock(partition), last=self.locks.pop(partition))
        for partition in sorted(mine - set(self.locks)):
            try:
                self.locks[partition] = await self.kv.create(
                    self._lock(partition), self.me.encode()
                )
            except nats.js.errors.KeyWrongLastSequenceError:
                continue  # still held by its previous owner, who is draining it
            await self.sub.take(partition)

    async def leave(self) -> None:
        """Give up every lock and the lease, so others take over at once (best effort)."""
        with contextlib.suppress(TransportError), _translated(f"leaving as {self.me}"):
            for partition, revision in list(self.locks.items()):
                await self.kv.delete(self._lock(partition), last=revision)
            self.locks.clear()
            await self.kv.delete(f"{self.prefix}.m.{self.me}")
