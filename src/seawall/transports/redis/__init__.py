"""The Redis Streams transport (``redis://host:port/db``, ``rediss://`` for TLS), over redis-py.

How the transport model (see :mod:`seawall._transport`) maps onto Redis
(key names in :mod:`seawall.transports.redis._keys`, the atomic steps in
:mod:`seawall.transports.redis._scripts`):

* **Channel** → one stream per partition, and a ``meta`` hash that fixes the
  partition count, the bound and whether the channel is ephemeral; the first
  declaration (or the first use) writes it, every process reads it back.
* **Message** → one stream entry in CloudEvents binary mode with the ``ce_``
  attribute prefix (as the Kafka binding names them): fields ``ce_id``,
  ``ce_type``, ``ce_source``, ``ce_specversion``, the other attributes,
  ``content-type``, extra headers as they are, and the payload as ``data``;
  any Redis client reads them.
* **Bound** → the publish script refuses an entry while its partition holds
  ``max_messages`` entries not settled by every group (so the bound holds per
  partition: a channel of ``n`` partitions may hold up to ``n`` times it); it first trims, with
  ``XTRIM MINID``, the entries every group has settled (below each group's
  oldest pending entry, or past its last delivered one). A stream with no
  group keeps everything, so publishers wait until a group settles. A full
  partition makes a publisher retry with backoff up to ``publish_timeout``,
  then raise :class:`ChannelFull`.
* **Group** → a consumer group on each partition stream; each subscription
  is a consumer of its own (a UUIDv7 name), reading with ``XREADGROUP`` at
  most ``prefetch`` entries held at once (credit: it asks only for what it has
  room for). ``attempt`` is the entry's delivery count in the group.
* **Settling** → ack is ``XACK`` (concurrent acks share one round trip).
  **Delayed redelivery** is a sorted set per group and partition, scored by
  due time: a nack moves the entry to the ``seawall-parked`` consumer and into
  that set (one script), and a member of the group claims due entries with
  ``XCLAIM``, which counts the attempt. Chosen over re-publishing a copy so
  an entry keeps its id, its place in the group's pending list (which holds
  the bound) and its delivery count. Members look at the set every ``poll``
  seconds, and at the exact due time of their own nacks.
* **Close / broken link** → unsettled entries are given back at once, due
  now (so they come again with the next attempt); entries read but never
  handed out go back with their count lowered, so their attempt stays 1.
  A member that dies without a word (or whose link broke before it could
  give its entries back) leaves them pending under its consumer. The member
  reading their partition (any member, with one partition) claims each entry
  once it has been idle ``claim_idle`` (``XCLAIM``; never from the parked
  consumer): it looks when the next entry of another consumer falls due, and
  at least every quarter of ``claim_idle``, consumer by consumer, and again at
  once while more are due than it had credit for. A live member keeps the
  entries it holds fresh (``XCLAIM JUSTID``) every third of ``claim_idle``. So
  a dead member's entries come again within ``claim_idle`` of its last word
  when its partition has another reader, and within ``max(claim_idle,
  lease)`` when its partition lease must first run out (at most ``claim_idle +
  lease``), plus a round trip, given credit: about 2.1 s measured with
  ``claim_idle`` 2 s and ``lease`` 1 s. They may come after later messages of
  their keys that the new owner read meanwhile.
* **Partitions** → with several partitions each is owned by one member at a
  time: members renew a lease in a sorted set by the server's clock, and own
  partition ``p`` by a lock key set with ``NX PX lease`` and renewed with the
  lease. Who should own what follows :func:`seawall._transport.assignment.wanted`; a
  member giving a partition up stops reading it, waits until it holds none of
  its entries, then deletes the lock. A dead member's locks run out after
  ``lease``.
* **Ephemeral channels** (reply inboxes) → read the same way; their keys
  are deleted when their subscription closes, and a publish to an ephemeral
  channel whose ``meta`` has gone is dropped (its requester has left). A
  publish to a missing channel named ``_inbox.…`` is dropped too. So that a
  process that dies without closing (SIGKILL, a lost machine) leaves nothing
  behind for long, every key of an ephemeral channel lives at most
  ``ephemeral_ttl`` seconds (default 60; ``?ephemeral_ttl=SECONDS`` in the
  URL): it is born with that time to live (``meta`` in the pipeline that
  writes it, the stream with its group) and the living subscriber renews it
  every third of it from its read loop, idle or not (the ``expire`` script);
  a stream or retry set made again later takes the time to live of its
  channel. If the subscriber could not renew in time (a link down longer
  than ``ephemeral_ttl``) and the keys expired, its subscription ends with
  :class:`ConnectionLost` and subscribing again makes the channel anew.
* **Durability** is read from the server when the transport connects: with
  ``appendonly yes`` and ``appendfsync always`` Redis fsyncs the AOF before
  it answers a write, :attr:`Durability.LOCAL_FSYNC`; otherwise (no AOF, or
  ``everysec``, which may answer before even writing under fsync pressure)
  :attr:`Durability.MEMORY`. A server that hides ``CONFIG`` is taken as
  memory. Redis has no idempotent append: a publish retried after a lost
  answer may store the message twice (at-least-once).
* **Link** → publishing retries a lost link with backoff up to
  ``publish_timeout``, then raises :class:`ConnectionLost`; a subscription
  whose read fails ends with :class:`ConnectionLost` and the dispatcher
  subscribes again.
* **Replay** → a durable channel's entries have ids ``<ms>-<n>``: the
  server's clock in milliseconds and the entry's number in its stream, from 1
  (:mod:`seawall.transports.redis._scripts`), so an entry's *offset* is
  ``n - 1``, its position in its partition or level. A new group starts at
  ``FromOffsets`` by being created just before the first entry numbered
  ``offset + 1`` or later (the ``seek`` script), and at ``FromTime`` just
  after the last entry stored before that millisecond (``XREVRANGE``), on
  every stream of the channel; it then reads on with ``XREADGROUP`` as any
  group. A start below the oldest entry kept starts there; one past the
  newest starts at the next entry appended. Store times are the Redis
  server's clock, to the millisecond.
* **Priority levels** (``ChannelSpec.priorities``, one partition) → one
  stream per level; a member reads the highest levels first (one
  non-blocking read per level until its credit is used) and, when all are
  empty, waits on the highest levels its credit allows, so an entry of a
  lower level may wait up to ``poll`` seconds more. FIFO within a level.
* **Delayed delivery** (``publish(not_before=…)``) → the entry waits in the
  channel's ``scheduled`` sorted set (bounded by ``max_messages``), scored by
  its due time; subscribers of the channel move due entries to their
  partition streams (one script, so each moves once) when they look at their
  retry sets, so it arrives within ``poll`` seconds of its time, once some
  member of some group reads the channel.
* **Group expiry** (``subscribe(idle_expiry=…)``) → the channel's ``idle``
  hash holds each expiring group's expiry and when a member last noted it in
  use (on joining, every third of the expiry while it is read, on leaving), and
  each new subscription to the channel first destroys the groups noted longer
  ago than their expiry: see :mod:`._idle`. Redis runs no timer for it, so an
  expired group goes when the channel is next subscribed to (the registry's
  readers do so at every start); until then what it has not settled counts
  against the channel's bound (see **Bound**). A member that is not read
  (nobody iterates its subscription) notes nothing. A group found existing is
  joined as it is, expiring or not.

The tunables named above are :class:`~seawall.transports.RedisOptions`, given
in code or in the URL's query (``redis://127.0.0.1:6379/0?prefix=shop&claim_idle=10``);
the query keys redis-py reads itself (``socket_timeout``, ``ssl_cert_reqs``, …)
are left for it.

Driver errors are translated at this edge by
:func:`seawall.transports.redis._wire.translated`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Unpack

from ..._clock import Clock, SystemClock
from ..._exceptions import (
    ChannelFull,
    ConfigurationError,
    ConnectionLost,
    MessageTooLarge,
    TransportClosed,
    TransportError,
)
from ..._messages.envelope import Message
from ..._transport import (
    MAX_PRIORITIES,
    Capabilities,
    ChannelSpec,
    Durability,
    FromOffsets,
    Start,
    is_reply_inbox,
    partition_for,
)
from ..._transport.publishing import until_stored

try:
    import redis.asyncio
    import redis.exceptions
    from redis.asyncio.retry import Retry
    from redis.backoff import NoBackoff
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    raise ConfigurationError(
        "the Redis transport needs redis-py: pip install 'seawall[redis]'"
    ) from exc

from .._options import RedisOptions, RedisSettings
from ._batch import Batcher
from ._entry import encode
from ._idle import sweep
from ._keys import Keys, RedisChannel
from ._replies import RedisReplyStore
from ._scripts import SCRIPTS
from ._subscription import RedisSubscription
from ._wire import connection_class, round_trip, translate, translated

__all__ = [
    "EPHEMERAL_TTL",
    "RedisChannel",
    "RedisOptions",
    "RedisReplyStore",
    "RedisSubscription",
    "RedisTransport",
]

log = logging.getLogger("seawall.transports.redis")

EPHEMERAL_TTL = RedisOptions.ephemeral_ttl
"""Default seconds the keys of an ephemeral channel outlive its owner's last renewal."""
_ATTRIBUTES_BELOW = 64 << 10  # attributes and headers of a message are taken to be smaller


@dataclass(slots=True)  # not frozen: built once per publish, and frozen ones build slower
class _Append:
    channel: RedisChannel
    partition: int
    fields: list[str | bytes]


class RedisTransport:
    """A connection to a Redis server, channels as streams; see the module docstring."""

    def __init__(
        self,
        url: str = "redis://127.0.0.1:6379/0",
        *,
        clock: Clock | None = None,
        options: RedisOptions | Mapping[str, Any] | None = None,
        **settings: Unpack[RedisSettings],
    ) -> None:
        if "ephemeral_ttl" in settings and settings["ephemeral_ttl"] is None:
            del settings["ephemeral_ttl"]  # the old default: the URL's, or EPHEMERAL_TTL
        chosen, self.url = RedisOptions.resolve(options, url=url, settings=settings)
        self.options = chosen
        """What this transport runs with: ``options``, then the URL's query, then keywords."""
        self.ephemeral_ttl = chosen.ephemeral_ttl
        """Seconds the keys of an ephemeral channel outlive its last renewal (see above)."""
        self.clock = clock or SystemClock()
        self.prefix = chosen.prefix
        self.publish_timeout = chosen.publish_timeout
        self.claim_idle = chosen.claim_idle
        self.lease = chosen.lease
        self.rebalance = chosen.rebalance
        self.poll = chosen.poll
        self.connect_timeout = chosen.connect_timeout
        self.api_timeout = chosen.api_timeout
        """Longest wait for Redis to answer one round trip before the link counts as lost."""
        self._client: redis.asyncio.Redis | None = None
        self._channels: dict[str, RedisChannel] = {}
        self._declared: dict[str, ChannelSpec] = {}
        self._subs: set[RedisSubscription] = set()
        self._closed = False
        self._appends: Batcher[_Append, bytes | int] = Batcher(self._append_batch)
        self._capabilities = Capabilities(
            durability=Durability.MEMORY,
            partitions=True,
            delayed_redelivery=True,
            delayed_delivery=True,
            priorities=MAX_PRIORITIES,
            max_message_bytes=chosen.max_message_bytes,
            replay=True,
            group_expiry=True,
        )

    @classmethod
    async def connect(cls, url: str = "redis://127.0.0.1:6379/0", **options: Any) -> RedisTransport:
        """A transport connected to ``url``; ``options`` are those of the constructor."""
        transport = cls(url, **options)
        await transport.link()
        return transport

    @property
    def capabilities(self) -> Capabilities:
        return self._capabilities

    @property
    def where(self) -> str:
        """The server's address, without credentials (for messages)."""
        return self.url.split("@")[-1]

    def _check_open(self) -> None:
        if self._closed:
            raise TransportClosed("the Redis transport is closed; connect a new one")

    async def link(self) -> redis.asyncio.Redis:
        """The redis-py client, connecting first if this transport has not yet."""
        self._check_open()
        if self._client is None:
            packing = connection_class(self.url)
            extra: dict[str, Any] = {} if packing is None else {"connection_class": packing}
            client = redis.asyncio.Redis.from_url(
                self.url,
                **extra,
                socket_connect_timeout=self.connect_timeout,
                # No socket timeout: redis-py then sends through asyncio.wait_for, which
                # on Python 3.11 can swallow a cancellation; round trips are bounded by
                # api_timeout here instead.
                socket_timeout=None,
                retry=Retry(NoBackoff(), 1),  # one fresh connection after a stale one
                health_check_interval=0,
            )
            try:
                async with round_trip(f"connecting to Redis at {self.where}", self.api_timeout):
                    await client.ping()
                    durability = await self._durability(client)
            except ConnectionLost as exc:
                await client.aclose()
                raise ConnectionLost(
                    f"cannot connect to Redis at {self.where} ({exc.__cause__!r}); is "
                    "redis-server running there?"
                ) from exc
            self._capabilities = replace(self._capabilities, durability=durability)
            self._client = client
        return self._client

    async def _durability(self, client: redis.asyncio.Redis) -> Durability:
        try:
            config = await client.config_get("append*")
        except redis.exceptions.ResponseError:  # CONFIG renamed away: assume the least
            return Durability.MEMORY
        found = {_text(k): _text(v) for k, v in config.items()}
        if found.get("appendonly") == "yes" and found.get("appendfsync") == "always":
            return Durability.LOCAL_FSYNC
        return Durability.MEMORY

    async def script(self, name: str, keys: Sequence[str], args: Sequence[Any]) -> Any:
        """Run one of :data:`SCRIPTS`, loading it if the server does not know it."""
        client = await self.link()
        script = SCRIPTS[name]
        async with asyncio.timeout(self.api_timeout):
            try:
                return await client.evalsha(script.sha, len(keys), *keys, *args)
            except redis.exceptions.NoScriptError:
                await client.script_load(script.source)
                return await client.evalsha(script.sha, len(keys), *keys, *args)

    # -- channels ------------------------------------------------------------
    async def declare(self, spec: ChannelSpec) -> None:
        self._check_open()
        self._declared.setdefault(spec.name, spec)
        await self.channel(spec.name)

    async def channel(self, name: str, *, create: bool = True) -> RedisChannel | None:
        """The channel, its ``meta`` written from its spec if missing (and ``create``)."""
        found = self._channels.get(name)
        if found is not None:
            return found
        spec = self._declared.get(name) or ChannelSpec(name=name)
        if spec.partitions < 1:
            raise ConfigurationError(
                f"channel {name!r} needs at least one partition, got {spec.partitions}"
            )
        keys = Keys(self.prefix, name)
        client = await self.link()
        async with round_trip(f"declaring channel {name!r}", self.api_timeout):
            if create:
                async with client.pipeline(transaction=True) as pipe:
                    pipe.hsetnx(keys.meta, "partitions", spec.partitions)
                    pipe.hsetnx(keys.meta, "max_messages", spec.max_messages)
                    pipe.hsetnx(keys.meta, "ephemeral", int(spec.ephemeral))
                    pipe.hsetnx(keys.meta, "priorities", spec.priorities)
                    if spec.ephemeral:  # its owner renews it from now on
                        pipe.pexpire(keys.meta, self._ttl_ms)
                    pipe.hgetall(keys.meta)
                    *_, meta = await pipe.execute()
            else:
                meta = await client.hgetall(keys.meta)
        if not meta:
            return None
        fields = {_text(k): int(v) for k, v in meta.items()}
        found = RedisChannel(
            keys,
            fields["partitions"],
            fields["max_messages"],
            bool(fields["ephemeral"]),
            fields.get("priorities", 1),
        )
        self._channels[name] = found
        return found

    @property
    def _ttl_ms(self) -> int:
        return max(1, int(self.ephemeral_ttl * 1000))

    async def renew(self, channel: RedisChannel, group: str) -> bool:
        """Renew the time to live of an ephemeral channel's keys; False if they expired."""
        keys = channel.keys.expiring(channel.lanes, group)
        return bool(await self.script("expire", keys, [self._ttl_ms]))

    async def delete(self, channel: str, *, group: str | None = None) -> None:
        """Delete every key of the channel (found by its hash tag), or the group's consumer
        group on each stream and the group's keys."""
        self._check_open()
        found = await self.channel(channel, create=False)
        if found is None:
            return
        if group is None:
            self._channels.pop(channel, None)
            self._declared.pop(channel, None)
            await self._unlink_matching(f"{_glob(found.keys.base)}:*", channel)
            return
        keys, client = found.keys, await self.link()
        doomed = [keys.retry(group, lane) for lane in range(found.lanes)]
        doomed += [keys.lock(group, p) for p in range(found.partitions)]
        async with (
            round_trip(f"deleting group {group!r} of channel {channel!r}", self.api_timeout),
            client.pipeline(transaction=False) as pipe,
        ):
            for lane in range(found.lanes):
                pipe.xgroup_destroy(keys.stream(lane), keys.group(group))
            pipe.unlink(*doomed, keys.members(group), keys.epochs(group))
            pipe.hdel(keys.idle, group)
            await pipe.execute(raise_on_error=False)  # a stream may be gone already

    async def _unlink_matching(self, pattern: str, channel: str) -> None:
        """Delete the keys matching ``pattern``, a bounded round trip per thousand."""
        client = await self.link()
        cursor: int | None = None
        while cursor != 0:
            async with round_trip(f"deleting channel {channel!r}", self.api_timeout):
                cursor, found = await client.scan(cursor or 0, match=pattern, count=1000)
                if found:
                    await client.unlink(*found)

    async def forget(self, channel: RedisChannel, groups: list[str]) -> None:
        """Delete an ephemeral channel's keys once its subscriber has left."""
        self._channels.pop(channel.name, None)
        with contextlib.suppress(TransportError):
            async with round_trip(f"deleting {channel.name!r}", self.api_timeout):
                client = await self.link()
                await client.delete(*channel.keys.all(channel.lanes, groups))

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
        fields = encode(message)
        self._check_size(channel, message, fields)
        if not_before is not None and not_before > self.clock.time():
            await self._schedule(channel, message, fields, not_before, priority)
        else:
            await self._send(channel, message, fields, priority)

    async def _schedule(
        self, name: str, message: Message, fields: list[str | bytes], due: float, priority: int
    ) -> None:
        """Hold the entry in the channel's scheduled set until ``due``, waiting for room."""

        async def attempt(left: float | None) -> bool | ChannelFull:
            channel = await self.channel(name)
            assert channel is not None
            packed = pack([str(_lane(channel, message, priority)), *fields])
            args = [channel.max_messages, int(due * 1000), packed]
            async with round_trip(f"scheduling {message.id} on {name!r}", self.api_timeout):
                held = await self.script("schedule", [channel.keys.scheduled], args) != -1
            return held or self._full(channel)

        await until_stored(self.clock, self.publish_timeout, attempt)

    def _check_size(self, channel: str, message: Message, fields: list[str | bytes]) -> None:
        limit = self._capabilities.max_message_bytes
        if limit is None or len(message.data) + _ATTRIBUTES_BELOW < limit:
            return  # far below: not worth counting the attributes
        size = sum(len(f) for f in fields)
        if size > limit:
            raise MessageTooLarge(
                f"message {message.id} ({message.type}) is {size} bytes with its attributes, "
                f"over the Redis transport's {limit}-byte max_message_bytes, for channel "
                f"{channel!r}; send a reference to the data instead"
            )

    async def _send(
        self, name: str, message: Message, fields: list[str | bytes], priority: int = 0
    ) -> None:
        """Append until Redis stores it, waiting for room and for the link."""

        async def attempt(left: float | None) -> bool | ChannelFull:
            channel = self._channels.get(name) or await self.channel(
                name, create=not is_reply_inbox(name)
            )
            if channel is not None:
                lane = _lane(channel, message, priority)
                outcome = await self._appends.submit(_Append(channel, lane, fields))
                if outcome != 0:
                    return outcome != -1 or self._full(channel)
                self._channels.pop(name, None)  # an ephemeral channel that has gone
            log.debug("dropped a message for %s: that reply inbox has gone", name)
            return True

        await until_stored(self.clock, self.publish_timeout, attempt)

    async def _append_batch(self, appends: list[_Append]) -> list[bytes | int | Exception]:
        """One publish script per channel, all in one pipeline; the script loaded if missing."""
        by_channel: dict[str, list[int]] = {}
        for i, append in enumerate(appends):
            by_channel.setdefault(append.channel.name, []).append(i)
        calls = [self._script_call([appends[i] for i in picks]) for picks in by_channel.values()]
        client = await self.link()
        script = SCRIPTS["publish"]
        answers: list[Any] = [None] * len(calls)
        todo = list(range(len(calls)))
        for _ in range(2):
            with translated("publishing"):
                async with asyncio.timeout(self.api_timeout), client.pipeline(False) as pipe:
                    for c in todo:
                        pipe.evalsha(script.sha, *calls[c])
                    for c, answer in zip(
                        todo, await pipe.execute(raise_on_error=False), strict=True
                    ):
                        answers[c] = answer
            todo = [c for c in todo if isinstance(answers[c], redis.exceptions.NoScriptError)]
            if not todo:
                break
            async with round_trip("loading the publish script", self.api_timeout):
                await client.script_load(script.source)
        results: list[bytes | int | Exception] = [0] * len(appends)
        for picks, answer in zip(by_channel.values(), answers, strict=True):
            for n, i in enumerate(picks):
                results[i] = _outcome(answer, n)
        return results

    def _script_call(self, appends: list[_Append]) -> list[Any]:
        """``numkeys, *keys, *args`` of one publish script call for one channel's entries."""
        channel = appends[0].channel
        partitions = sorted({a.partition for a in appends})
        index = {p: n for n, p in enumerate(partitions)}
        keys = [channel.keys.meta, channel.keys.added, *map(channel.keys.stream, partitions)]
        args: list[Any] = [channel.max_messages, int(channel.ephemeral)]
        for a in appends:
            args += (index[a.partition], len(a.fields), *a.fields)
        return [len(keys), *keys, *args]

    def _full(self, channel: RedisChannel) -> ChannelFull:
        return ChannelFull(
            f"channel {channel.name!r} holds its bound of {channel.max_messages} messages not "
            f"yet settled by every group, and none was settled within {self.publish_timeout} s; "
            "the consumers are behind: add consumers, raise max_messages, or retry later"
        )

    # -- subscribing -----------------------------------------------------------
    async def subscribe(
        self,
        channel: str,
        *,
        group: str,
        prefetch: int = 64,
        start: Start = "earliest",
        idle_expiry: float | None = None,
    ) -> RedisSubscription:
        self._check_open()
        if prefetch < 1:
            raise ValueError(f"prefetch must be at least 1, got {prefetch}")
        if idle_expiry is not None and not idle_expiry > 0:
            raise ValueError(f"idle_expiry must be more than 0 seconds, got {idle_expiry}")
        found = await self.channel(channel)
        assert found is not None
        expiring = set() if found.ephemeral else await sweep(self, found)
        created = await self._join(found, group, await self._start_ids(found, start))
        sub = RedisSubscription(self, found, group, prefetch)
        if group in expiring or (created and idle_expiry is not None):
            sub.note_use(idle_expiry if created else None)
        self._subs.add(sub)
        try:
            await sub.start()
        except BaseException:
            await sub.close()
            raise
        return sub

    async def _start_ids(self, channel: RedisChannel, start: Start) -> list[str]:
        """Per stream, the id a new group is created at: it reads the entries after it."""
        lanes = channel.lanes
        if isinstance(start, str):
            return ["$" if start == "latest" else "0"] * lanes
        if isinstance(start, FromOffsets) and len(start.offsets) != lanes:
            raise ConfigurationError(
                f"channel {channel.name!r} has {lanes} logs (partitions x priority levels) "
                f"on Redis but the start position names {len(start.offsets)} offsets; give one "
                "per log"
            )
        streams = [channel.keys.stream(p) for p in range(lanes)]
        async with round_trip(f"finding where to start on {channel.name!r}", self.api_timeout):
            if isinstance(start, FromOffsets):  # entry n has offset n - 1 (see _scripts)
                pairs = zip(streams, start.offsets, strict=True)
                return [_text(await self.script("seek", [s], [max(o, 0) + 1])) for s, o in pairs]
            client = await self.link()
            before = f"({math.floor(start.time * 1000)}-0"  # ids are store times in ms
            found = [await client.xrevrange(s, max=before, min="-", count=1) for s in streams]
            return [_text(last[0][0]) if last else "0-0" for last in found]

    async def _join(self, channel: RedisChannel, group: str, at: list[str]) -> bool:
        """Create the group on each stream where it is missing; whether it was anywhere."""
        client = await self.link()
        made = False
        async with round_trip(
            f"joining group {group!r} on channel {channel.name!r}", self.api_timeout
        ):
            for p in range(channel.lanes):
                stream = channel.keys.stream(p)
                name = channel.keys.group(group)
                async with client.pipeline(transaction=True) as pipe:
                    pipe.xgroup_create(stream, name, id=at[p], mkstream=True)
                    if channel.ephemeral:  # born mortal: its owner renews it from now on
                        pipe.pexpire(stream, self._ttl_ms)
                    created, *_ = await pipe.execute(raise_on_error=False)
                if isinstance(created, Exception) and "BUSYGROUP" not in str(created):
                    raise created
                made = made or not isinstance(created, Exception)
        return made

    def left(self, sub: RedisSubscription) -> None:
        self._subs.discard(sub)

    async def drop_connection_for_tests(self) -> None:
        """Cut every connection under redis-py, as a network failure would."""
        client = await self.link()
        await client.connection_pool.disconnect(inuse_connections=True)
        for sub in list(self._subs):
            await sub.break_link()

    async def close(self) -> None:
        if self._closed:
            return
        for sub in list(self._subs):
            await sub.close()
        self._closed = True
        if self._client is not None:
            await self._client.aclose()


def _lane(channel: RedisChannel, message: Message, priority: int) -> int:
    """The stream a message goes to: its priority level's, or its partition key's."""
    if channel.levels > 1:
        return min(max(priority, 0), channel.levels - 1)
    return partition_for(message.partitionkey, channel.partitions)


def _glob(text: str) -> str:
    """``text`` as a Redis glob pattern matching only itself."""
    return "".join("\\" + c if c in "*?[]\\^" else c for c in text)


def pack(parts: list[str | bytes]) -> bytes:
    """Strings as one, each after its length (4 bytes, big-endian), as ``release`` reads them."""
    raw = [p.encode() if isinstance(p, str) else p for p in parts]
    return b"".join(struct.pack(">I", len(p)) + p for p in raw)


def _text(value: bytes | str | None) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _outcome(answer: Any, n: int) -> bytes | int | Exception:
    """The result of the ``n``-th entry of a publish script's answer."""
    if isinstance(answer, Exception):
        return translate("publishing", answer)
    if isinstance(answer, int):  # the ephemeral channel has gone: every entry is dropped
        return answer
    return answer[n]  # type: ignore[no-any-return]
