"""The NATS JetStream transport (``nats://host:port``), over nats-py.

How the transport model (see :mod:`seawall._transport`) maps onto JetStream:

* **Channel** → one stream per channel, named ``SEAWALL_<token>``, with one
  subject per partition, ``seawall.<token>.<partition>``, or per priority
  level, and one where delayed messages wait (the subjects, consumer names and
  offsets are spelled out in :mod:`._layout`); ``<token>`` is the
  channel name made name-safe by :func:`seawall._transport.assignment.token` (``orders``
  stays ``orders``, ``orders.events`` becomes ``orders_2eevents``). File
  storage, limits retention, ``max_msgs = ChannelSpec.max_messages`` with
  ``discard=new``: a full stream refuses a publish, never drops a stored
  message. Limits retention keeps settled messages, so a publisher that meets
  a full stream purges, per partition subject, what every group has acked (the
  lowest ack floor of the stream's consumers; nothing while no group exists)
  and tries again, waiting up to ``publish_timeout`` before :class:`ChannelFull`.
  A new channel has the partitions (or levels) it was declared with; its
  layout is read back from the stream's subjects by every process, and a
  stream made before delayed delivery gets the schedule subject added.
* **Message** → CloudEvents binary mode: attributes in ``ce-`` headers,
  ``content-type``, extra headers as they are, the payload as the body, so a
  plain NATS client reads it. ``Nats-Msg-Id`` is the message id: a publish
  retried after a lost acknowledgement is stored once (2-minute window).
* **Publishing** → each publish waits for its own PubAck, and only for its own:
  JetStream answers on one wildcard inbox of the connection, so concurrent publishes
  are pipelined (up to 4,096 unanswered; more wait for room), each returning once
  stored. One connection's messages are stored in the order they were sent, so a
  publisher's publishes are stored in call order (:mod:`._acks`).
* **Group** → one durable pull consumer per partition or level (``<group
  token>``, ``<group token>_p<n>`` with several partitions, ``<group
  token>_l<n>`` with levels), starting where the group starts: at the first
  message kept, at the next one, at an offset (``FromOffsets``: deliver by
  start sequence; a NATS offset is the stream sequence minus one) or at a time
  (``FromTime``: deliver by start time, the server's store time): explicit
  ack, ``AckWait`` = ``ack_wait``, ``MaxDeliver`` unlimited (the dead-letter decision is the
  dispatcher's), ``MaxAckPending`` = ``max_ack_pending`` for the whole group as
  a backstop. Each subscription bounds its own deliveries by pull credit: it
  asks for at most ``prefetch`` messages, minus those it holds, in pull
  requests that expire after ``pull_expires`` and are renewed. ``attempt`` is
  JetStream's delivery count; ``nack(delay)`` is a NAK with that delay. A
  delivery held longer than ``ack_wait / 2`` is kept alive with an in-progress
  ack, so slow handlers and queued deliveries are not redelivered behind
  their back.
* **Group expiry** (``subscribe(idle_expiry=…)``, ``Capabilities.group_expiry``)
  → a new group's consumers get ``InactiveThreshold``: the server deletes a
  durable that has had no pull request waiting for that long (nats-server 2.9
  and later; checked within about a second). A member pulls all the time while
  it has credit, but one holding ``prefetch`` deliveries unsettled asks for
  nothing, and a partition nobody owns (during a hand-over) is not pulled: the
  expiry must be far above the longest handler and the ``lease``. A group found
  existing is joined as it is, expiring or not.
* **Close / broken link** → unsettled and received-but-unread deliveries are
  NAKed, so they come again soon, not after AckWait: on a close at once (after
  unsubscribing the pull inboxes on the same connection and having the server
  drop their open pull requests: a NAK that meets a stale request is lost on
  nats-server 2.9); ``stop_intake`` (a graceful drain) does the same first, so
  the dispatcher's NAKs reach the server in key order with nothing of this
  member left to take them, and the next pull of any member gets them first,
  in that order; on a broken link once
  the old connection's pull requests have expired (at most ``pull_expires`` +
  ``api_timeout``), since the server may still hold that connection and hand
  redeliveries to its requests; a new subscription of this transport waits for
  that too. If this process dies instead, they come again after ``ack_wait``. nats-py
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
  :func:`seawall._transport.assignment.wanted`; a member that should give a partition
  up stops pulling it, waits until it holds none of its messages, and only
  then deletes the lock. A member that dies loses its locks when their TTL
  runs out; a partitioned group's consumers have an ``AckWait`` of at most half
  the lease, so its unsettled messages are due again by then and the
  new owner's first pull gets them, before later messages of their keys. The
  bucket has the transport's ``replicas`` (an older bucket with fewer is raised),
  so it survives the loss of any server the channels survive.
* **Reply inboxes** (channels named ``_inbox.<instance>``, which the runtime
  declares ephemeral) → core NATS, no stream: a reply is a plain NATS message
  on ``seawall.<token>.0`` read by a plain subscription (see
  :mod:`seawall.transports.nats._core`), one hop instead of a stored publish
  and a pull. A reply to a requester that has gone, or sent while a link is
  down, is lost, as the ephemeral contract allows; the request itself was
  stored durably (unless its channel's requests are direct, below). Other
  **ephemeral channels** → a memory-storage stream (one replica) read like
  any other, deleted when its subscription closes.
* **Direct requests** (a channel declared with ``ChannelSpec(requests="direct")``,
  which its stream's description records) → a request (reply channel and
  deadline, no ``not_before``) is a plain NATS message on
  ``seawall.<token>.direct``, outside the stream, read by each group as a NATS
  queue group (:mod:`._direct`): nothing is stored, acknowledged or pulled, so a
  request published while no member listens, or held by a member whose link
  breaks or whose process dies, is lost and its caller times out and retries (a
  member that stops gracefully publishes what it held back to its group). The
  choice is made when the stream is created; other messages of the channel are
  stored as always.
* **Priority levels** (``ChannelSpec.priorities`` > 1, one partition) → a
  subject and a consumer per level; a member probes the levels highest first
  within its credit and watches them all when they are empty
  (:mod:`._levels`). FIFO within a level.
* **Delayed delivery** (``publish(not_before=…)``) → nats-server 2.9 has no
  per-message delay, so the message waits under the channel's schedule
  subject, stored like the others, and every subscription's mover NAKs it
  until due and then publishes it to its log, once (:mod:`._schedule`).
  Delayed redelivery (``nack(delay=…)``) is native. A reply inbox takes no
  delayed message (it keeps nothing).
* **Durability**: JetStream acknowledges a publish once the stream leader
  (and, with ``replicas`` ≥ 3, a quorum) has written it, and fsyncs later
  unless the server runs with ``sync_interval: always``:
  :attr:`Durability.WRITTEN`, or :attr:`Durability.REPLICATED` with
  ``replicas`` ≥ 3.

The tunables named above are :class:`~seawall.transports.NatsOptions`, given
in code or in the URL's query: ``nats://127.0.0.1:4222?replicas=3&ack_wait=60``
(a comma-separated list of servers takes one query, at its end).

Driver errors are translated at this edge by
:data:`seawall.transports.nats._wire.translated`.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any, Literal, Unpack

import msgspec

from ..._clock import Clock, SystemClock
from ..._exceptions import (
    ChannelFull,
    ConfigurationError,
    ConnectionLost,
    MessageTooLarge,
    TransportClosed,
    TransportError,
)
from ..._messages.envelope import Message, to_headers
from ..._transport import (
    MAX_PRIORITIES,
    Capabilities,
    ChannelSpec,
    Durability,
    Start,
    is_request,
)
from ..._transport.assignment import token
from ..._transport.dedupe import dedupe_key
from ..._transport.publishing import until_stored
from ...discovery import Announcement
from .._options import NatsOptions, NatsSettings

try:
    import nats
    import nats.errors
    import nats.js.errors
    from nats.aio.client import Client
    from nats.aio.msg import Msg
    from nats.js import api
    from nats.js.client import JetStreamContext
    from nats.js.kv import KeyValue
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    raise ConfigurationError(
        "the NATS transport needs the nats-py client: pip install 'seawall[nats]'"
    ) from exc

from ._acks import Acks
from ._core import CoreSubscription, rides_core  # after the check above: nats-py is there
from ._headers import install as install_header_parser
from ._layout import DIRECT_MARK, Stream, deliver_policy, stream_subjects
from ._ownership import lease_bucket
from ._pongs import install as install_pong_reader
from ._received import install as install_plain_taker
from ._schedule import scheduled_headers
from ._subscription import NatsSubscription
from ._wire import LEASE_BUCKET, MSG_ID, STREAM_PREFIX, translated
from .micro import Micro

__all__ = ["NatsOptions", "NatsSubscription", "NatsTransport"]

log = logging.getLogger("seawall.transports.nats")

_MAX_MESSAGES_EXCEEDED = 10077  # JetStream error code of a full discard=new stream
_HEADER_OVERHEAD = len(b"NATS/1.0\r\n\r\n")
_DEFAULT_MAX_PAYLOAD = 1 << 20  # the server default, until its INFO tells


class _PubAck(msgspec.Struct):
    """JetStream's answer to a publish: where it stored the message, or why it did not."""

    stream: str = ""
    seq: int = 0
    error: dict[str, Any] | None = None


def _read_ack(data: bytes) -> _PubAck:
    try:
        return _ack_decoder.decode(data)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise TransportError(f"NATS JetStream answered a publish with {data[:200]!r}") from exc


_ack_decoder = msgspec.json.Decoder(_PubAck)


class NatsTransport:
    """A connection to a NATS server with JetStream; see the module docstring."""

    def __init__(
        self,
        url: str = "nats://127.0.0.1:4222",
        *,
        clock: Clock | None = None,
        options: NatsOptions | Mapping[str, Any] | None = None,
        **settings: Unpack[NatsSettings],
    ) -> None:
        chosen, self.url = NatsOptions.resolve(options, url=url, settings=settings)
        self.options = chosen
        """What this transport runs with: ``options``, then the URL's query, then keywords."""
        self.clock = clock or SystemClock()
        self.publish_timeout = chosen.publish_timeout
        self.ack_wait = chosen.ack_wait
        self.pull_expires = chosen.pull_expires
        self.lease = chosen.lease
        self.replicas = replicas = chosen.replicas
        self.max_ack_pending = chosen.max_ack_pending
        self.api_timeout = chosen.api_timeout
        self._options = {
            "name": chosen.name,
            "reconnect_time_wait": chosen.reconnect_wait,
            "connect_timeout": chosen.connect_timeout,
        }
        self._client: Client | None = None
        self._js: JetStreamContext | None = None
        self._acks: Acks | None = None
        self._connecting = asyncio.Lock()
        self._broke = asyncio.Event()  # set when nats-py reports a lost link
        self._streams: dict[str, Stream] = {}
        self._declared: dict[str, ChannelSpec] = {}
        self._subs: set[NatsSubscription] = set()
        self._core_subs: set[CoreSubscription] = set()
        # Deliveries a broken link left behind, each with the time by which the pull
        # requests of its old connection have expired: NAKed once that has passed.
        self._parked: list[tuple[float, Msg]] = []
        self._kv: KeyValue | None = None
        self._micro: Micro | None = None
        self._closed = False
        durable = Durability.REPLICATED if replicas >= 3 else Durability.WRITTEN
        self._capabilities = Capabilities(
            durability=durable,
            partitions=True,
            delayed_redelivery=True,
            delayed_delivery=True,
            max_message_bytes=_DEFAULT_MAX_PAYLOAD,
            replay=True,
            priorities=MAX_PRIORITIES,
            group_expiry=True,
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
                    install_header_parser(self._client)
                    install_pong_reader(self._client)  # a flush given up on leaves it reading
                    install_plain_taker(self._client)  # plain messages read from their blocks
                    self._capabilities = replace(
                        self._capabilities, max_message_bytes=self._client.max_payload
                    )
                    acks = Acks(self._client)
                    with translated(f"subscribing to publish acknowledgements at {self.url}"):
                        await acks.start()
                    self._acks = acks
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
            client = await nats.connect(
                self.url.split(","),
                max_reconnect_attempts=2,  # the first connection: fail soon, with a clear error
                disconnected_cb=disconnected,
                error_cb=error,
                **self._options,
            )
        except (OSError, nats.errors.Error) as exc:
            raise ConnectionLost(
                f"cannot connect to NATS at {self.url} ({exc!r}); is nats-server running there "
                "with JetStream enabled (-js)?"
            ) from exc
        client.options["max_reconnect_attempts"] = -1  # once linked, reconnect for ever
        return client

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
        if rides_core(spec.name):
            await self.link()  # nothing to create on the server
            return
        await self._stream(spec.name)

    async def _stream(self, channel: str, *, create: bool = True) -> Stream | None:
        stream = self._streams.get(channel)
        if stream is None:
            spec = self._declared.get(channel) or ChannelSpec(name=channel)
            stream = await self._ensure(spec, create=create)
            if stream is not None:
                self._streams[channel] = stream
        return stream

    async def _ensure(self, spec: ChannelSpec, *, create: bool = True) -> Stream | None:
        """The channel's stream, created with ``spec`` if missing (and ``create``)."""
        name = STREAM_PREFIX + token(spec.name)
        js = await self.link()
        with translated(f"declaring channel {spec.name!r} (stream {name})"):
            try:
                info = await js.stream_info(name)
            except nats.js.errors.NotFoundError:
                if not create:
                    return None
                info = await js.add_stream(self._stream_config(spec, name))
            stream = self._read_back(spec.name, info.config)
            if not stream.scheduled:  # made before delayed delivery: give it the subject
                config = info.config
                config.subjects = [*(config.subjects or ()), stream.schedule]
                stream = self._read_back(spec.name, (await js.update_stream(config)).config)
        return stream

    @staticmethod
    def _read_back(channel: str, config: api.StreamConfig) -> Stream:
        ephemeral = config.storage == api.StorageType.MEMORY
        assert config.name is not None
        return Stream.read_back(
            channel,
            config.name,
            config.subjects or (),
            ephemeral=ephemeral,
            description=config.description,
        )

    def _stream_config(self, spec: ChannelSpec, name: str) -> api.StreamConfig:
        if spec.partitions < 1:
            raise ConfigurationError(
                f"channel {spec.name!r} needs at least one partition, got {spec.partitions}"
            )
        tok = name.removeprefix(STREAM_PREFIX)
        return api.StreamConfig(
            name=name,
            description=f"seawall channel {spec.name}"
            + (DIRECT_MARK if spec.requests == "direct" else ""),
            subjects=stream_subjects(tok, spec.partitions, spec.priorities),
            retention=api.RetentionPolicy.LIMITS,
            discard=api.DiscardPolicy.NEW,
            max_msgs=spec.max_messages,
            storage=api.StorageType.MEMORY if spec.ephemeral else api.StorageType.FILE,
            num_replicas=1 if spec.ephemeral else self.replicas,
        )

    async def delete(self, channel: str, *, group: str | None = None) -> None:
        """Delete the channel's stream (its consumers go with it), or the group's consumers.

        The group's partition leases in the KV bucket are left to expire (``lease``).
        """
        self._check_open()
        if rides_core(channel):
            return  # a reply inbox keeps nothing on the server
        stream = await self._stream(channel, create=False)
        if stream is None:
            return
        js = await self.link()
        with translated(f"deleting {_what(channel, group)}"):
            if group is None:
                self._streams.pop(channel, None)
                self._declared.pop(channel, None)
                with contextlib.suppress(nats.js.errors.NotFoundError):
                    await js.delete_stream(stream.name)
                return
            for log in range(stream.logs):
                name = stream.consumer(token(group), log)
                with contextlib.suppress(nats.js.errors.NotFoundError):
                    await js.delete_consumer(stream.name, name)

    async def _forget(self, stream: Stream) -> None:
        """Delete an ephemeral channel's stream once its subscriber has left."""
        self._streams.pop(stream.channel, None)
        js = await self.link()
        with (
            contextlib.suppress(TransportError),
            translated(f"deleting reply inbox {stream.channel!r}"),
        ):
            await js.delete_stream(stream.name)

    # -- publishing ------------------------------------------------------------
    async def publish(
        self,
        channel: str,
        message: Message,
        *,
        not_before: float | None = None,
        priority: int = 0,
    ) -> None:
        self._check_open()
        if not_before is not None and not_before <= self.clock.time():
            not_before = None  # due already: published as any other
        if rides_core(channel):
            if not_before is not None:
                raise ConfigurationError(
                    f"cannot hold {message.type} ({message.id}) back until a given time: "
                    f"{channel!r} is a reply inbox, which rides core NATS and keeps nothing; "
                    "send the reply when it is due"
                )
            what = f"replying with {message.id} to {channel!r}"
            await self._send_plain(channel, _core_subject(channel), message, what)
            return
        if not_before is None and is_request(message):
            stream = self._streams.get(channel) or await self._target(channel)
            if stream is not None and stream.direct:
                what = f"sending request {message.id} to {stream.channel!r}"
                await self._send_plain(channel, stream.direct_subject, message, what)
                return
        headers = to_headers(message)
        headers[MSG_ID] = dedupe_key(message)
        self._check_size(channel, message, headers)
        await self._send(channel, message, headers, priority, not_before)

    async def _send_plain(self, channel: str, subject: str, message: Message, what: str) -> None:
        """A reply, or a request on a channel whose requests are direct: one plain NATS
        message, no acknowledgement, not stored (lost if nobody listens, see ._core and
        ._direct)."""
        await self.link()
        acks = self._acks
        assert acks is not None
        command = acks.plain_command(subject, message)  # the common case, in one go
        with translated(what):
            if command is not None:
                await acks.write(command, len(message.data))
                return
            headers = to_headers(message)
            self._check_size(channel, message, headers)
            await acks.send(subject, message.data, headers)

    async def _target(self, channel: str) -> Stream | None:
        """The channel's stream, created on first use."""
        return await self._stream(channel)

    def _check_size(self, channel: str, message: Message, headers: dict[str, str]) -> None:
        limit = self._capabilities.max_message_bytes
        if limit is None:
            return
        size = _HEADER_OVERHEAD + len(message.data) + 4 * len(headers)
        # UTF-8 takes at most 4 bytes a character: only a message that might be near the
        # limit is measured to the byte, so the common small one costs two sums of lengths.
        chars = sum(map(len, headers)) + sum(map(len, headers.values()))
        if size + 4 * chars <= limit:
            return
        size += sum(len(k.encode()) + len(v.encode()) for k, v in headers.items())
        if size > limit:
            raise MessageTooLarge(
                f"message {message.id} ({message.type}) is {size} bytes with its headers, over "
                f"the NATS server's {limit}-byte max_payload, for channel {channel!r}; send a "
                "reference to the data instead"
            )

    async def _send(
        self,
        channel: str,
        message: Message,
        headers: dict[str, str],
        priority: int = 0,
        due: float | None = None,
    ) -> None:
        """Publish until JetStream acknowledges, waiting for room and for the link;
        with ``due``, to the channel's schedule (see :mod:`._schedule`)."""

        async def attempt(left: float | None) -> bool | ChannelFull:
            stream = self._streams.get(channel) or await self._target(channel)
            if stream is None:
                return True  # no stream to store it in (see _target)
            outcome = await self._publish_once(stream, message, headers, left, priority, due)
            if outcome == "full" and await self._trim(stream):
                outcome = await self._publish_once(stream, message, headers, left, priority, due)
            if outcome == "gone":  # deleted behind our back: look it up again
                self._streams.pop(channel, None)
                return False
            return outcome == "stored" or self._full(stream)

        await until_stored(self.clock, self.publish_timeout, attempt, answer=self.api_timeout)

    async def _publish_once(
        self,
        stream: Stream,
        message: Message,
        headers: dict[str, str],
        left: float | None,
        priority: int = 0,
        due: float | None = None,
    ) -> Literal["stored", "full", "gone"]:
        """One try, within ``left`` seconds."""
        await self.link()
        wait = self.api_timeout if left is None else min(left, self.api_timeout)
        log_index = stream.log_for(message.partitionkey, priority)
        subject = stream.subjects[log_index]
        if due is not None:
            subject, headers = stream.schedule, scheduled_headers(headers, due, log_index)
        # What JetStreamContext.publish does, with the answer on one inbox of ours
        # (pipelined, see ._acks) and read by msgspec instead of json.loads into
        # nats-py's PubAck dataclass: on the path of every publish and request.
        assert self._acks is not None
        with translated(f"publishing {message.id} to {stream.channel!r}"):
            try:
                answer = await self._acks.publish(subject, message.data, wait, headers)
            except nats.errors.NoRespondersError:
                return "gone"  # no stream takes the subject any more
            return _outcome(answer)

    async def _store(
        self, subject: str, data: bytes, headers: dict[str, str], what: str
    ) -> Literal["stored", "full", "gone"]:
        """Publish raw data to a stream's subject, as :meth:`_publish_once` publishes."""
        await self.link()
        assert self._acks is not None
        with translated(what):
            try:
                answer = await self._acks.publish(subject, data, self.api_timeout, headers)
            except nats.errors.NoRespondersError:
                return "gone"
            return _outcome(answer)

    def _full(self, stream: Stream) -> ChannelFull:
        spec = self._declared.get(stream.channel)
        bound = f"{spec.max_messages} " if spec else ""
        return ChannelFull(
            f"channel {stream.channel!r} (stream {stream.name}) holds its bound of {bound}"
            f"messages not yet settled by every group, and none was settled within "
            f"{self.publish_timeout} s; the consumers are behind: add consumers, raise "
            "max_messages, or retry later"
        )

    async def _trim(self, stream: Stream) -> int:
        """Purge, per partition subject, what every group has acked; how many went."""
        js = await self.link()
        with translated(f"trimming channel {stream.channel!r}"):
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
        self,
        channel: str,
        *,
        group: str,
        prefetch: int = 64,
        start: Start = "earliest",
        idle_expiry: float | None = None,
    ) -> NatsSubscription | CoreSubscription:
        self._check_open()
        if prefetch < 1:
            raise ValueError(f"prefetch must be at least 1, got {prefetch}")
        if rides_core(channel):
            return await self._subscribe_core(channel, prefetch)
        # Looked up afresh, not from the cache: a stream deleted behind our back is made
        # again, instead of every new subscription failing on its missing stream.
        self._streams.pop(channel, None)
        stream = await self._stream(channel)
        assert stream is not None
        last = await self._last_sequence(stream) if not isinstance(start, str) else 0
        consumers = [
            await self._consumer(
                stream, group, log, deliver_policy(stream, start, log, last), idle_expiry
            )
            for log in range(stream.logs)
        ]
        await self._return_parked()
        kv = await self._lease_bucket() if stream.partitions > 1 else None
        sub = NatsSubscription(self, stream, group, consumers, prefetch, kv)
        self._subs.add(sub)
        try:
            await sub.start()
        except BaseException:
            await sub.close()
            raise
        return sub

    async def _last_sequence(self, stream: Stream) -> int:
        js = await self.link()
        with translated(f"reading channel {stream.channel!r}"):
            return int((await js.stream_info(stream.name)).state.last_seq)

    async def _consumer(
        self,
        stream: Stream,
        group: str,
        log_index: int,
        start: tuple[api.DeliverPolicy, int | None, datetime | None],
        expiry: float | None = None,
    ) -> str:
        """The group's durable consumer of one log, made to ``start`` (and to be deleted
        by the server after ``expiry`` seconds without a pull) if new."""
        if expiry is not None and not expiry > 0:
            raise ValueError(f"idle_expiry must be more than 0 seconds, got {expiry}")
        name = stream.consumer(token(group), log_index)
        policy, sequence, since = start
        config = api.ConsumerConfig(
            durable_name=name,
            ack_policy=api.AckPolicy.EXPLICIT,
            ack_wait=self.ack_wait_of(stream),
            max_deliver=-1,
            max_ack_pending=self.max_ack_pending,
            filter_subject=stream.subject(log_index),
            deliver_policy=policy,
            opt_start_seq=sequence,
            opt_start_time=since,
            inactive_threshold=expiry,
        )
        js = await self.link()
        with translated(f"joining group {group!r} on channel {stream.channel!r}"):
            try:
                await js.consumer_info(stream.name, name)
            except nats.js.errors.NotFoundError:
                await js.add_consumer(stream.name, config)
        return name

    def ack_wait_of(self, stream: Stream) -> float:
        """The ``AckWait`` of ``stream``'s consumers: ``ack_wait``, and with several
        partitions at most half the lease. A member that dies renewed its leases at most
        a third of the lease before, so everything it held unsettled is due again a
        sixth of the lease before its leases run out: the next owner's first pull gets
        those messages (JetStream hands redeliveries out first), before later ones of
        their keys."""
        if stream.partitions <= 1:
            return self.ack_wait
        return min(self.ack_wait, self.lease / 2)

    async def _lease_bucket(self) -> KeyValue:
        if self._kv is None:
            js = await self.link()
            with translated(f"opening the lease bucket {LEASE_BUCKET}"):
                self._kv = await lease_bucket(js, ttl=self.lease, replicas=self.replicas)
        return self._kv

    async def _subscribe_core(self, channel: str, prefetch: int) -> CoreSubscription:
        await self.link()
        sub = CoreSubscription(self, channel, _core_subject(channel), prefetch)
        self._core_subs.add(sub)
        try:
            with translated(f"subscribing to reply inbox {channel!r}"):
                await sub.start()
        except BaseException:
            await sub.close()
            raise
        return sub

    def _left(self, sub: NatsSubscription) -> None:
        self._subs.discard(sub)

    def _left_core(self, sub: CoreSubscription) -> None:
        self._core_subs.discard(sub)

    # -- giving back what a broken link left behind ---------------------------
    def _park(self, msgs: list[Msg], until: float) -> None:
        """Keep deliveries of a broken link until its pull requests have expired."""
        self._parked.extend((until, msg) for msg in msgs)

    async def _return_parked(self, patience: float | None = None) -> None:
        """NAK what broken links left behind, once no old pull request can take it.

        After a link breaks, the server keeps the old connection's pull requests
        until they expire, and may keep the connection itself for a while (until it
        notices, or on a half-open link until its pings fail). A message handed to
        such a request goes into the dead link and comes back only after AckWait;
        and with nats-server 2.9.10 we saw NAKs sent while the old connection
        lingered make the consumer skip one redelivery and deliver a later message
        twice (the flake of ``test_resubscribe_after_broken_link``, reproduced by
        ``test_a_lingering_old_connection_takes_no_redelivery``). So a new
        subscription and these NAKs wait until every old request has expired;
        ``patience`` caps the wait (on close), after which the NAKs go out anyway.
        A caller cancelled while waiting leaves the deliveries for the next one.
        """
        clock = self.clock
        cap = None if patience is None else clock.time() + patience
        while self._parked:
            until = max(due for due, _ in self._parked)
            if cap is not None:
                until = min(until, cap)
            if (wait := until - clock.time()) > 0:
                log.debug("waiting %.2f s for the broken link's pull requests to expire", wait)
                await clock.sleep(wait)
            last = cap is not None and until >= cap
            for item in [item for item in self._parked if last or item[0] <= until]:
                if item in self._parked:  # not taken by a concurrent caller meanwhile
                    self._parked.remove(item)
                    with contextlib.suppress(nats.errors.Error):
                        await item[1].nak()
            if last:
                return

    async def _link_broke(self) -> None:
        self._broke.set()
        if self._closed:
            return
        log.warning("link to NATS broke; %d subscription(s) end", len(self._subs))
        for sub in list(self._subs):
            await sub.break_link()
        for core in list(self._core_subs):
            await core.break_link()

    async def drop_connection_for_tests(self) -> None:
        """Cut the TCP connection under nats-py, as a network failure would."""
        transport = getattr(self.client, "_transport", None)
        writer = getattr(transport, "_io_writer", None)
        assert writer is not None, "nats-py changed: no socket to cut"
        self._broke.clear()
        writer.transport.abort()
        async with asyncio.timeout(5.0):
            await self._broke.wait()

    async def announced(self, announcements: Sequence[Announcement]) -> None:
        """Answer NATS micro's ``$SRV.PING/INFO/STATS`` for these instances (see :mod:`.micro`)."""
        await self.link()
        if self._micro is None:
            self._micro = Micro(lambda: self.client)
        await self._micro.update(announcements)

    async def close(self) -> None:
        if self._closed:
            return
        if self._micro is not None and self._client is not None:
            await self._micro.close()
        for sub in list(self._subs):
            await sub.close()
        for core in list(self._core_subs):
            await core.close()
        if self._parked and self._client is not None and self._client.is_connected:
            await self._return_parked(patience=self.api_timeout)
        self._closed = True
        if self._client is None:
            return  # never connected
        with contextlib.suppress(nats.errors.Error, OSError, asyncio.TimeoutError):
            await self.client.flush(timeout=int(self.api_timeout) or 1)
        await self.client.close()


def _outcome(ack: bytes) -> Literal["stored", "full"]:
    """What JetStream's answer to a publish says; an error other than full is raised."""
    error = _read_ack(ack).error
    if error is None:
        return "stored"
    if error.get("err_code") == _MAX_MESSAGES_EXCEEDED:
        return "full"
    nats.js.errors.APIError.from_error(error)  # raises the matching APIError
    raise AssertionError("unreachable: from_error raises")  # pragma: no cover


def _what(channel: str, group: str | None) -> str:
    return f"channel {channel!r}" if group is None else f"group {group!r} of channel {channel!r}"


@functools.lru_cache(maxsize=1024)
def _core_subject(channel: str) -> str:
    """The plain NATS subject of a reply inbox (cached: a server answers the same few
    requesters over and over, and :func:`token` reads the name character by character)."""
    return f"seawall.{token(channel)}.0"
