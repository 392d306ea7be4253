"""The embedded broker: channels, consumer groups and credit over a durable store.

The broker decides what each consumer gets with the sans-IO group state of
:mod:`seawall._broker.log`, holds each partition as a :class:`~seawall._broker.pages.PagedLog`
(a bounded tail in memory over the store) and writes through a
:class:`~seawall._broker.storage.Storage` (the SQLite group-commit writer of
:mod:`seawall._broker.store_writer`), or keeps everything in memory when it has none.

What a publish acknowledgement means is the storage's policy; the broker adds
one rule on top: a message becomes visible to consumers only once it is as
durable as its acknowledgement says, so no consumer handles a message that a
crash could take back. Committed group positions are written lazily (with the
next write); after a crash a group resumes from its last written position, so
deliveries that were settled but not yet recorded come again (at-least-once).

Each channel keeps a duplicate window, as JetStream does: the dedupe keys (see
:mod:`seawall._transport.dedupe`; the message id of a plain publish) of the
publishes it stored in the last ``limits.dedupe_window`` seconds (at most
``limits.dedupe_ids`` of them). A publish whose key is in the window is
acknowledged at once and not stored again: a publish retried after a lost
acknowledgement (a broker restart) is stored once. A key enters the window when
its publish is committed, in the same transaction as the entry (the store's
``ids`` table), so the window survives a restart; a retry that arrives while its
first try is still being written is stored twice.

A new group may start at offsets or at a time (replay of what is still kept):
a durable channel looks times up in the store, one kept in memory keeps each
entry's store time beside its log.

A new group may also expire (``idle_expiry``): a task deletes it once it has had
no member that long (:mod:`seawall._broker.idle`); a restarted broker counts
from its start, since the group's members went with the last one.

This module is asyncio glue only where it must be: waiting for room, waiting
for durability, and one task that moves delayed messages into their logs when
they fall due. The embedded transport (``embedded://``) and the broker server
(``seawall broker``) both sit on top of it.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import functools
import heapq
import itertools
import logging
from collections import deque
from collections.abc import Callable

from .._clock import Clock, timeout_at, wait_until
from .._exceptions import ChannelFull, ConfigurationError, MessageTooLarge, TransportClosed
from .._tasks import TaskScope
from .._transport import ChannelSpec, FromOffsets, Start, StartAt
from .direct import DirectQueue
from .idle import EXPIRY_PART, IdleGroups, expiry_ms
from .limits import BrokerLimits
from .log import GroupState
from .member import Member
from .pages import PagedLog, Reader
from .storage import Storage, layout_of, spec_of
from .store import Recovered

__all__ = ["Broker", "BrokerLimits", "Member"]

log = logging.getLogger("seawall.broker")
_TRIM_EVERY = 64
"""Settlements between two trims of a channel's log while no publisher waits for room."""


class _Channel:
    def __init__(self, spec: ChannelSpec, logs: list[PagedLog], durable: bool) -> None:
        self.spec = spec
        self.logs = logs
        self.durable = durable
        # Store times of a channel kept in memory, per log from its base (the store
        # keeps them for a durable one): a group may start at a time on either.
        self.times: list[deque[float]] = [] if durable else [deque() for _ in logs]
        self.groups: dict[str, GroupState[bytes]] = {}
        # Direct requests (ChannelSpec.requests="direct") of each group with a live member.
        self.direct: dict[str, DirectQueue[bytes]] = {}
        self.members: set[Member] = set()
        self.space = asyncio.Event()  # set whenever trimming freed room
        self.waiting = 0  # publishers waiting for room
        self.untrimmed = 0  # settlements since the last trim
        # The duplicate window: dedupe key -> store time, and (time, key) oldest first.
        self.seen: dict[str, float] = {}
        self.seen_order: deque[tuple[float, str]] = deque()

    def retained(self) -> int:
        logs = self.logs
        if len(logs) == 1:  # most channels, asked once per publish
            return logs[0].retained
        return sum(log.retained for log in logs)

    def new_group(self, start: StartAt, positions: list[int] | None = None) -> GroupState[bytes]:
        return GroupState(self.logs, start, positions, levels=self.spec.priorities)

    def wake(self) -> None:
        for member in self.members:
            member.wake.set()


def _logs(spec: ChannelSpec) -> int:
    """Logs a channel is stored in: one per partition, or per priority level."""
    return spec.partitions * spec.priorities


class Broker:
    """Channels and groups of one broker; durable when given a :class:`Storage`."""

    def __init__(
        self, *, clock: Clock, storage: Storage | None, limits: BrokerLimits | None = None
    ) -> None:
        self.clock = clock
        self.storage = storage
        self.limits = limits or BrokerLimits()
        self._channels: dict[str, _Channel] = {}
        self._gone: set[str] = set()  # ephemeral channels whose subscriber left
        self._scheduled: list[tuple[float, int, str, str, int, bytes]] = []
        self._sequence = itertools.count()
        self._due = asyncio.Event()
        self._idle = IdleGroups()
        self._idled = asyncio.Event()  # set when a group may have become idle
        self._scope = TaskScope()
        self._closed = False
        self._window = self.limits.dedupe_window
        self.duplicates = 0
        """Publishes acknowledged without being stored: their key was in the window."""

    # -- life cycle ---------------------------------------------------------
    async def open(self, recovered: Recovered | None = None) -> None:
        """Rebuild the state a store held, then start the delayed-delivery task."""
        if recovered is not None:
            self._recover(recovered)
        self._scope.create_task(self._release_due_forever())
        self._scope.create_task(self._expire_idle_forever())
        if self.storage is not None:
            self._scope.create_task(self._retain_forever())

    def _recover(self, recovered: Recovered) -> None:
        for name, layout in recovered.channels.items():
            spec = spec_of(name, layout)
            kept = [recovered.logs.get((name, p)) for p in range(_logs(spec))]
            bounds = [(0, 0) if b is None else (b.base, b.end) for b in kept]
            self._channels[name] = self._make_channel(spec, bounds)
        positions: dict[tuple[str, str], list[int]] = {}
        for (name, group, p), committed in recovered.positions.items():
            channel = self._channels.get(name)
            if channel is not None and p < len(channel.logs):
                starts = positions.setdefault((name, group), [0] * len(channel.logs))
                starts[p] = committed
        for (name, group), starts in positions.items():
            channel = self._channels[name]
            channel.groups[group] = channel.new_group("earliest", starts)
        now = self.clock.time()  # an expiring group has no member yet: idle since now
        for (name, group, p), ms in recovered.positions.items():
            if p == EXPIRY_PART and (name, group) in positions:
                self._idle.expiring((name, group), ms / 1000, now)
        self._recover_ids(recovered)
        for item in recovered.scheduled:
            partition, _, _ = item.id.partition(":")
            entry = (
                item.due,
                next(self._sequence),
                item.id,
                item.channel,
                int(partition),
                item.body,
            )
            heapq.heappush(self._scheduled, entry)

    def _recover_ids(self, recovered: Recovered) -> None:
        """Fill the duplicate windows from the ids the store kept; forget the stale ones."""
        cutoff = self.clock.time() - self._window
        if self._window:
            for channel_name, key, time in recovered.ids:
                channel = self._channels.get(channel_name)
                if channel is not None and time >= cutoff:
                    self._remember(channel, key, time)
        if recovered.ids and self.storage is not None:
            self.storage.forget_ids(cutoff if self._window else float("inf"))

    async def close(self) -> None:
        """Close every member (their deliveries come again) and the store."""
        if self._closed:
            return
        self._closed = True
        for channel in list(self._channels.values()):
            for member in list(channel.members):
                member.leave("closed")
        await self._scope.__aexit__(None, None, None)
        if self.storage is not None:
            await self.storage.close()

    def _check_open(self) -> None:
        if self._closed:
            raise TransportClosed("the broker is closed; open it again to use it")

    # -- channels -----------------------------------------------------------
    def _make_channel(self, spec: ChannelSpec, bounds: list[tuple[int, int]]) -> _Channel:
        durable = self.storage is not None and not spec.ephemeral
        logs = [
            PagedLog(base=base, end=end, read=self._reader(spec.name, p), keep=self.limits.tail)
            if durable
            else PagedLog(read=None, keep=0)
            for p, (base, end) in enumerate(bounds)
        ]
        return _Channel(spec, logs, durable)

    def _reader(self, channel: str, partition: int) -> Reader:
        storage = self.storage
        assert storage is not None
        return lambda start, limit: [e.body for e in storage.read(channel, partition, start, limit)]

    async def declare(self, spec: ChannelSpec) -> None:
        """Create the channel if it does not exist; an existing one is kept as is."""
        self._check_open()
        if spec.name in self._channels:
            return
        self._gone.discard(spec.name)
        channel = self._channels[spec.name] = self._make_channel(spec, [(0, 0)] * _logs(spec))
        if channel.durable:
            assert self.storage is not None
            await self.storage.declare(spec.name, layout_of(spec))

    async def _channel(self, name: str) -> _Channel:
        channel = self._channels.get(name)
        if channel is None:
            await self.declare(ChannelSpec(name=name, partitions=self.limits.default_partitions))
            channel = self._channels[name]
        return channel

    def has_channel(self, name: str) -> bool:
        """Whether the channel exists."""
        return name in self._channels

    async def delete(self, name: str, *, group: str | None = None) -> None:
        """Delete a channel with its groups, messages and delayed messages, or one group of
        it; its members (or the group's) end as broken. Missing ones are no error."""
        self._check_open()
        channel = self._channels.get(name)
        if channel is None:
            return
        if group is None:
            await self._delete_channel(channel)
            return
        state = channel.groups.pop(group, None)
        if state is None:
            return
        for member in [m for m in channel.members if m.group is state]:
            member.leave("deleted")
        self._idle.forget(name, group)
        if channel.durable:
            assert self.storage is not None
            await self.storage.delete_group(name, group)
        self._trim(channel)

    def _deleted(self, channel: _Channel) -> bool:
        """Whether ``channel`` was deleted (its name may be a new channel's by now)."""
        return self._channels.get(channel.spec.name) is not channel

    async def _delete_channel(self, channel: _Channel) -> None:
        name = channel.spec.name
        del self._channels[name]
        self._gone.discard(name)
        self._idle.forget(name)
        for member in list(channel.members):
            member.leave("deleted")
        self._scheduled = [item for item in self._scheduled if item[3] != name]
        heapq.heapify(self._scheduled)
        channel.space.set()  # publishers waiting for room look again, and find it gone
        if channel.durable:
            assert self.storage is not None
            await self.storage.delete_channel(name)

    def partitions(self, name: str) -> int:
        """Partitions of an existing channel, else of one that first use would create."""
        channel = self._channels.get(name)
        return channel.spec.partitions if channel else self.limits.default_partitions

    # -- publishing ---------------------------------------------------------
    async def publish(
        self,
        name: str,
        body: bytes,
        *,
        partition: int = 0,
        priority: int = 0,
        key: str = "",
        not_before: float | None = None,
        request: bool = False,
        dedupe: str | None = None,
    ) -> None:
        """Append ``body``; return once it is as durable as the storage promises.

        ``request``: ``body`` is a request whose caller waits with a deadline; on a
        channel declared with ``sync_requests=False`` it is committed without fsync.

        ``priority`` picks the level of a channel with priority levels (clamped to
        its range); ``key`` names a delayed message in the store (its message id).
        ``dedupe``: the publish's key in the channel's duplicate window (see the module):
        a key seen within the window is acknowledged without storing ``body`` again.
        """
        self._check_open()
        if name in self._gone:
            log.debug("dropped a message for %s: its only subscriber has left", name)
            return
        self._check_size(name, body)
        channel = await self._channel(name)
        if request and not_before is None and channel.spec.requests == "direct":
            self._hand_over(channel, body)
            return
        if dedupe is not None and self._window:
            if self._duplicate(channel, dedupe):
                return
        else:
            dedupe = None
        if channel.retained() >= channel.spec.max_messages:
            await self._wait_for_space(channel)
            if self._deleted(channel):
                return  # published to a channel deleted meanwhile: gone with it
        levels = channel.spec.priorities
        if levels > 1:
            partition = min(max(priority, 0), levels - 1)
        if not_before is not None and not_before > self.clock.time():
            await self._schedule(channel, key, partition, not_before, body, dedupe)
        else:
            fsync = not request or channel.spec.sync_requests
            await self._append(channel, partition, body, fsync=fsync, dedupe=dedupe)

    def publish_calling(
        self,
        name: str,
        body: bytes,
        done: Callable[[BaseException | None], None],
        *,
        partition: int = 0,
        priority: int = 0,
        request: bool = False,
        dedupe: str | None = None,
    ) -> bool:
        """:meth:`publish` without a coroutine, when nothing has to wait: False (and
        nothing done) when it would, so the caller awaits :meth:`publish` instead.

        ``done`` is called once ``body`` is as durable as the storage promises, with
        None, or with the error of a failed write. The broker server publishes so:
        no task and no future per message, the answers sent from the commit's callback.
        """
        channel = self._channels.get(name)
        if (
            self._closed
            or channel is None
            or len(body) > self.limits.max_message_bytes
            or channel.retained() >= channel.spec.max_messages
        ):
            return False
        if request and channel.spec.requests == "direct":
            self._hand_over(channel, body)
            done(None)
            return True
        storage = self.storage if channel.durable else None
        if storage is not None and (storage.full or storage.acks_before_commit):
            return False
        if dedupe is not None and self._window:
            if self._duplicate(channel, dedupe):
                done(None)
                return True
        else:
            dedupe = None
        levels = channel.spec.priorities
        if levels > 1:
            partition = min(max(priority, 0), levels - 1)
        log_ = channel.logs[partition]
        offset = log_.stage(body)
        now = self.clock.time()
        if storage is None:
            channel.times[partition].append(now)
            self._reveal(channel, log_, offset)
            if dedupe is not None:
                self._remember(channel, dedupe, now)
            done(None)
            return True

        written = functools.partial(_written, log_, done)  # one object, not a closure's three
        reveal = (
            functools.partial(self._reveal, channel, log_, offset)
            if dedupe is None
            else functools.partial(self._reveal_seen, channel, log_, offset, dedupe, now)
        )
        fsync = not request or channel.spec.sync_requests
        storage.append_calling(name, partition, offset, now, body, reveal, fsync, written, dedupe)
        return True

    def _hand_over(self, channel: _Channel, body: bytes) -> None:
        """A direct request: offered to each group with a live member, from memory
        (see :mod:`.direct`); dropped if there is none, as its caller's deadline allows."""
        queues = channel.direct
        if not queues:
            log.debug("a direct request to %s found no member to take it", channel.spec.name)
            return
        if not all(len(queue) < queue.bound for queue in queues.values()):
            raise ChannelFull(
                f"channel {channel.spec.name!r} holds {channel.spec.max_messages} direct "
                "requests not yet settled by a group; its members are behind"
            )
        for queue in queues.values():
            queue.offer(body)
        channel.wake()

    # -- the duplicate window -----------------------------------------------
    def _duplicate(self, channel: _Channel, key: str) -> bool:
        """Whether ``key`` was stored within the window (counted as a duplicate if so)."""
        seen = channel.seen.get(key)
        if seen is None or seen < self.clock.time() - self._window:
            return False
        self.duplicates += 1
        log.debug("a publish to %s is a duplicate of %s: not stored", channel.spec.name, key)
        return True

    def _remember(self, channel: _Channel, key: str, time: float) -> None:
        """Put ``key`` in the window at ``time``; forget what fell out of it."""
        channel.seen[key] = time
        order = channel.seen_order
        order.append((time, key))
        if len(order) > self.limits.dedupe_ids or order[0][0] < time - self._window:
            self._expire(channel, time)

    def _expire(self, channel: _Channel, now: float) -> None:
        seen, order = channel.seen, channel.seen_order
        cutoff, cap = now - self._window, self.limits.dedupe_ids
        while order and (len(order) > cap or order[0][0] < cutoff):
            time, key = order.popleft()
            if seen.get(key) == time:  # else remembered again later
                del seen[key]

    def _reveal_seen(
        self, channel: _Channel, log_: PagedLog, offset: int, key: str, time: float
    ) -> None:
        """Committed: show the entry to consumers and put its key in the window."""
        self._reveal(channel, log_, offset)
        self._remember(channel, key, time)

    def _check_size(self, name: str, body: bytes) -> None:
        limit = self.limits.max_message_bytes
        if len(body) > limit:
            raise MessageTooLarge(
                f"a message of {len(body)} bytes is over the {limit}-byte limit of channel "
                f"{name!r}; send a reference to the data instead"
            )

    async def _append(
        self,
        channel: _Channel,
        partition: int,
        body: bytes,
        scheduled: str | None = None,
        *,
        fsync: bool = True,
        dedupe: str | None = None,
    ) -> None:
        """Stage ``body`` in its log, write it (moving delayed message ``scheduled`` if
        given), and show it to consumers once it is written."""
        storage = self.storage if channel.durable else None
        if storage is not None and storage.full:
            await storage.room()
            if self._deleted(channel):
                return  # published to a channel deleted meanwhile: gone with it
        log_ = channel.logs[partition]
        offset = log_.stage(body)
        now = self.clock.time()
        if storage is None:
            channel.times[partition].append(now)
            self._reveal(channel, log_, offset)
            if dedupe is not None:
                self._remember(channel, dedupe, now)
            return
        name = channel.spec.name
        # Shown to consumers as soon as it is committed: the writer calls this in the
        # loop callback that learns of the commit, a loop turn before the publisher
        # resumes, and whether or not the publisher still waits.
        reveal = (
            functools.partial(self._reveal, channel, log_, offset)
            if dedupe is None
            else functools.partial(self._reveal_seen, channel, log_, offset, dedupe, now)
        )
        if scheduled is None:
            written = storage.append(name, partition, offset, now, body, reveal, fsync, dedupe)
        else:
            written = storage.move_due(scheduled, name, partition, offset, now, body, reveal)
        if storage.acks_before_commit:
            # Acknowledged now; a failed write breaks the writer, so later writes raise.
            asyncio.ensure_future(written).add_done_callback(_seen)
            return
        try:
            await written
        except asyncio.CancelledError:
            raise  # the publisher left; the write goes on and is revealed when committed
        except BaseException:
            log_.abandon()
            raise

    @staticmethod
    def _reveal(channel: _Channel, log_: PagedLog, offset: int) -> None:
        if log_.reveal(offset + 1):
            channel.wake()

    async def _schedule(
        self,
        channel: _Channel,
        key: str,
        partition: int,
        due: float,
        body: bytes,
        dedupe: str | None = None,
    ) -> None:
        name, now = channel.spec.name, self.clock.time()
        key = f"{partition}:{key}"  # the store keeps no partition: the broker's id holds it
        if channel.durable:
            assert self.storage is not None
            if self.storage.full:
                await self.storage.room()
            await self.storage.schedule(key, name, due, body, now, dedupe)
        if dedupe is not None:
            self._remember(channel, dedupe, now)
        heapq.heappush(self._scheduled, (due, next(self._sequence), key, name, partition, body))
        self._due.set()

    async def _release_due_forever(self) -> None:
        """Move delayed messages into their logs as they fall due."""
        while True:
            self._due.clear()
            now = self.clock.time()
            while self._scheduled and self._scheduled[0][0] <= now:
                _, _, key, name, partition, body = heapq.heappop(self._scheduled)
                await self._release(key, name, partition, body)
            wake = self._scheduled[0][0] if self._scheduled else None
            with contextlib.suppress(TimeoutError):
                async with timeout_at(self.clock, wake):
                    await self._due.wait()

    async def _release(self, key: str, name: str, partition: int, body: bytes) -> None:
        channel = self._channels.get(name)
        if channel is None:  # an ephemeral inbox that went away meanwhile
            return
        await self._append(channel, partition, body, scheduled=key)

    async def _retain_forever(self) -> None:
        while True:
            await self.clock.sleep(self.limits.retention_interval)
            self.apply_retention()
            self.forget_expired_ids()

    def forget_expired_ids(self) -> None:
        """Drop the ids that fell out of every channel's duplicate window, here and in
        the store (each channel also drops its own as it remembers new ones)."""
        now, kept = self.clock.time(), False
        for channel in self._channels.values():
            if channel.seen_order:
                kept = kept or channel.durable
                self._expire(channel, now)
        if kept and self.storage is not None:
            self.storage.forget_ids(now - self._window)

    def apply_retention(self) -> None:
        """Drop what each durable channel's ``max_age`` / ``max_bytes`` no longer keeps."""
        storage = self.storage
        assert storage is not None
        now = self.clock.time()
        for channel in self._channels.values():
            spec = channel.spec
            if not channel.durable or (spec.max_age is None and spec.max_bytes is None):
                continue
            for p, log_ in enumerate(channel.logs):
                below = log_.base
                if spec.max_age is not None:
                    below = max(below, storage.offset_at_time(spec.name, p, now - spec.max_age))
                if spec.max_bytes is not None:
                    below = max(below, storage.offset_keeping_bytes(spec.name, p, spec.max_bytes))
                if below > log_.base:
                    self._drop(channel, p, below)

    def _drop(self, channel: _Channel, partition: int, below: int) -> None:
        """Retention: forget a partition's entries below ``below``, read or not."""
        assert self.storage is not None
        log.info(
            "retention dropped offsets %d..%d of %s/%d",
            channel.logs[partition].base,
            below - 1,
            channel.spec.name,
            partition,
        )
        channel.logs[partition].trim(below)
        for name, group in channel.groups.items():
            group.skip_to(partition, below)
            self.storage.set_position(
                channel.spec.name, name, partition, group.committed(partition)
            )
        self.storage.trim(channel.spec.name, partition, below)
        channel.space.set()

    async def _wait_for_space(self, channel: _Channel) -> None:
        limit = channel.spec.max_messages
        self._trim(channel)  # trimming is lazy: settled entries may still be held
        if channel.retained() < limit:
            return
        timeout = self.limits.publish_timeout
        deadline = None if timeout is None else self.clock.time() + timeout
        channel.waiting += 1
        try:
            async with timeout_at(self.clock, deadline):
                while channel.retained() >= limit and not self._deleted(channel):
                    channel.space.clear()
                    await channel.space.wait()
        except TimeoutError:
            raise ChannelFull(
                f"channel {channel.spec.name!r} holds {limit} unsettled messages (its bound) "
                f"and none was settled within {timeout} s; the consumers are behind: add "
                "consumers, raise max_messages, or retry later"
            ) from None
        finally:
            channel.waiting -= 1

    # -- consuming ----------------------------------------------------------
    async def subscribe(
        self,
        name: str,
        *,
        group: str,
        prefetch: int,
        start: Start = "earliest",
        idle_expiry: float | None = None,
    ) -> Member:
        """Join ``group`` on channel ``name``; ``start`` applies when the group is new, and
        ``idle_expiry`` too: the group is deleted once it has had no member that long."""
        self._check_open()
        if prefetch < 1:
            raise ValueError(f"prefetch must be at least 1, got {prefetch}")
        ms = None if idle_expiry is None else expiry_ms(idle_expiry)
        self._gone.discard(name)
        channel = await self._channel(name)
        state = channel.groups.get(group)
        if state is None:
            state = channel.groups[group] = self._new_group(channel, start)
            self._record_positions(channel, group, state)
            if ms is not None and not channel.spec.ephemeral:
                self._expiring(channel, group, ms)
        self._idle.joined((name, group))
        member = Member(self, channel, group, state, prefetch)
        if channel.spec.requests == "direct":
            bound = channel.spec.max_messages
            member.direct = channel.direct.setdefault(group, DirectQueue(bound))
        channel.members.add(member)
        channel.wake()
        return member

    def _new_group(self, channel: _Channel, start: Start) -> GroupState[bytes]:
        if isinstance(start, str):
            return channel.new_group(start)
        name = channel.spec.name
        if isinstance(start, FromOffsets):
            if len(start.offsets) != len(channel.logs):
                raise ConfigurationError(
                    f"channel {name!r} has {len(channel.logs)} logs (partitions x priority "
                    f"levels) but the start position names {len(start.offsets)} offsets"
                )
            return channel.new_group("earliest", list(start.offsets))
        if not channel.durable:
            at = [
                log_.base + bisect.bisect_left(times, start.time)
                for log_, times in zip(channel.logs, channel.times, strict=True)
            ]
            return channel.new_group("earliest", at)
        assert self.storage is not None
        at = [self.storage.offset_at_time(name, p, start.time) for p in range(len(channel.logs))]
        return channel.new_group("earliest", at)

    def _expiring(self, channel: _Channel, group: str, ms: int) -> None:
        self._idle.expiring((channel.spec.name, group), ms / 1000, self.clock.time())
        if channel.durable:
            assert self.storage is not None
            self.storage.set_position(channel.spec.name, group, EXPIRY_PART, ms)

    async def _expire_idle_forever(self) -> None:
        """Delete each expiring group once it has had no member for its expiry."""
        while True:
            self._idled.clear()
            while due := self._idle.due(self.clock.time()):
                name, group = due[0]
                log.info(
                    "group %s of %s expired: it had no member for its idle expiry", group, name
                )
                await self.delete(name, group=group)
            await wait_until(self.clock, self._idled, self._idle.next_due())

    def _record_positions(self, channel: _Channel, group: str, state: GroupState[bytes]) -> None:
        if channel.durable:
            assert self.storage is not None
            for p in range(len(channel.logs)):
                self.storage.set_position(channel.spec.name, group, p, state.committed(p))

    def _settled(self, member: Member, partition: int, before: int) -> None:
        channel = member.channel
        after = member.group.committed(partition)
        if after != before and channel.durable:
            assert self.storage is not None
            self.storage.set_position(channel.spec.name, member.name, partition, after)
        # Trimming walks every group of the channel, so it is batched unless a
        # publisher is waiting for the room it frees.
        channel.untrimmed += 1
        if channel.untrimmed >= _TRIM_EVERY or channel.waiting:
            self._trim(channel)

    def _trim(self, channel: _Channel) -> None:
        channel.untrimmed = 0
        if not channel.groups:
            return
        freed = False
        for p, log_ in enumerate(channel.logs):
            below = min(g.committed(p) for g in channel.groups.values())
            if below > log_.base:
                base = log_.base
                log_.trim(below)
                freed = True
                if channel.durable:
                    assert self.storage is not None
                    self.storage.trim(channel.spec.name, p, below)
                else:
                    for _ in range(log_.base - base):
                        channel.times[p].popleft()
        if freed:
            channel.space.set()

    def _left(self, member: Member) -> None:
        channel = member.channel
        channel.members.discard(member)
        member.group.leave(member.id, self.clock.time())
        if member.direct is not None:
            member.direct.leave(member.id)
            if not any(m.name == member.name for m in channel.members):
                channel.direct.pop(member.name, None)  # its callers time out
        name = channel.spec.name
        if not any(m.group is member.group for m in channel.members):
            self._idle.left((name, member.name), self.clock.time())
            self._idled.set()
        if channel.spec.ephemeral and not channel.members and self._channels.get(name) is channel:
            del self._channels[name]
            self._gone.add(name)
        channel.wake()

    def held(self) -> int:
        """Message bodies in memory, over every channel (bounded by ``limits.tail``)."""
        return sum(log.held for channel in self._channels.values() for log in channel.logs)

    def unsettled(self) -> int:
        """Messages some group has not settled yet, over every channel."""
        return sum(
            group.backlog()
            for channel in self._channels.values()
            for group in channel.groups.values()
        )


def _written(
    log_: PagedLog, done: Callable[[BaseException | None], None], error: BaseException | None
) -> None:
    """A publish without a coroutine was committed, or failed with ``error``."""
    if error is not None:
        log_.abandon()
    done(error)


def _seen(written: asyncio.Future[None]) -> None:
    """Mark the outcome of a write nobody awaits as retrieved (the writer keeps its error)."""
    if not written.cancelled():
        written.exception()
