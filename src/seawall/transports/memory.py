"""The in-memory transport: the reference implementation of the transport interface.

It keeps every channel in this process, with the full broker semantics of
:mod:`seawall._broker.log` (groups, partitions, credit, redelivery, bounded
channels, priority levels, replay of what is still kept from an offset or a
store time), so tests exercise the same behaviour the durable transports give.

Two ways to hold a message (``serialize``):

* **objects** (the default, ``memory://`` and ``MemoryTransport()``): the
  :class:`~seawall.Message` published is the one delivered, never encoded into a
  frame nor decoded from one; the size limit is still kept, by the frame the message
  would make (encoded into a reused buffer: cheaper than adding up a bound on the
  fields in Python). A node that has just built an envelope
  hands its payload object over with it (:attr:`MemoryTransport.handed`), and a handler
  whose class is that very class gets the sender's object when the class is immutable
  all the way down (:func:`~seawall._messages.sharing.shareable`); any other handler
  decodes ``Message.data``, a copy, as from a broker. ``Message.data`` is always the
  encoded payload, so dead letters, tracing, the outbox and the console read what a
  broker would carry. This is the production default because a process that runs its
  services on ``memory://`` gains nothing from encoding every message twice: the
  handoff between two coroutines is the whole cost.
* **frames** (``serialize=True``, what :class:`~seawall.testing.TestSystem` uses):
  every message is stored as an encoded frame and decoded on delivery, and every
  payload decoded into its handler's class, so a message that would not survive a real
  broker (a field whose value does not match its annotation, a header that is not
  text) fails here too. Tests should run this way; kept as objects, such a message
  reaches its handler as the sender built it.

:meth:`MemoryTransport.disconnect` simulates a broken link: every open
subscription raises :class:`~seawall.ConnectionLost` and its unsettled
deliveries come again, as they would after a network failure.

``memory://`` builds one (:func:`from_url`); its options are
:class:`~seawall.transports.MemoryOptions` (``memory://?default_partitions=4``).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import math
from collections import deque
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any, Unpack

import msgspec

from .._broker.log import ChannelState, GroupState, Taken
from .._clock import Clock, SystemClock, timeout_at
from .._exceptions import ChannelFull, ConnectionLost, MessageTooLarge, TransportClosed
from .._messages.envelope import (
    Message,
    decode_message,
    decode_message_raw,
    encode_message,
    encode_message_into,
)
from .._transport import (
    MAX_PRIORITIES,
    Capabilities,
    ChannelSpec,
    Delivery,
    Durability,
    Start,
    partition_for,
)
from ._options import MemoryOptions, MemorySettings

__all__ = ["MemoryOptions", "MemorySubscription", "MemoryTransport", "from_url"]

log = logging.getLogger("seawall.transports.memory")
_members = itertools.count(1)
_TRIM_EVERY = 64
"""Settlements between two trims of a channel's log while no publisher waits for room."""
_BATCH = 64
"""Deliveries the delivery loop takes from the group state at once (within the credit)."""


class _Channel:
    def __init__(self, spec: ChannelSpec) -> None:
        self.spec = spec
        self.state: ChannelState[Any] = ChannelState(spec.partitions, spec.priorities)
        self.subs: set[MemorySubscription] = set()
        self.sole: GroupState[Any] | None = None
        """The group of every live member, when they share one (see ``only_group``)."""
        self.space = asyncio.Event()  # set whenever trimming freed room
        self.waiting = 0  # publishers waiting for room
        self.untrimmed = 0  # settlements since the last trim

    def members_changed(self) -> None:
        groups = {id(sub.group): sub.group for sub in self.subs}
        self.sole = next(iter(groups.values())) if len(groups) == 1 else None

    def wake(self) -> None:
        for sub in self.subs:
            if sub.waiter is not None and not sub.deferred:  # a deferred one takes it anyway
                sub.notify()


class MemoryTransport:
    """All channels in this process; at-least-once, bounded, nothing durable."""

    def __init__(
        self,
        *,
        clock: Clock | None = None,
        options: MemoryOptions | Mapping[str, Any] | None = None,
        **settings: Unpack[MemorySettings],
    ) -> None:
        chosen, _ = MemoryOptions.resolve(options, settings=settings)
        self.options = chosen
        """What this transport runs with (keyword arguments over ``options``)."""
        self.clock = clock or SystemClock()
        self._serialize = chosen.serialize
        self._frame = bytearray()  # for the size of a message kept as an object
        self.carries_payloads = not chosen.serialize
        """Whether a node may hand over the payload object of an envelope (see ``handed``)."""
        self.handed: tuple[Message, Any] | None = None
        """Set by the node that just built an envelope: it and its payload object. The next
        publish of that very message keeps the object with it, for a handler that can take
        it as it is (:func:`~seawall._messages.sharing.shareable`)."""
        self._publish_timeout = chosen.publish_timeout
        self._max_bytes = chosen.max_message_bytes
        self._default_partitions = chosen.default_partitions
        self._channels: dict[str, _Channel] = {}
        self._gone: set[str] = set()  # ephemeral channels whose subscriber left
        self._closed = False
        self._capabilities = Capabilities(
            durability=Durability.MEMORY,
            partitions=True,
            delayed_redelivery=True,
            delayed_delivery=True,
            max_message_bytes=chosen.max_message_bytes,
            replay=True,
            priorities=MAX_PRIORITIES,
        )

    @property
    def capabilities(self) -> Capabilities:
        return self._capabilities

    def _check_open(self) -> None:
        if self._closed:
            raise TransportClosed("the memory transport is closed; create a new one")

    def _channel(self, name: str) -> _Channel:
        channel = self._channels.get(name)
        if channel is None:
            spec = ChannelSpec(name=name, partitions=self._default_partitions)
            channel = self._channels[name] = _Channel(spec)
        return channel

    async def declare(self, spec: ChannelSpec) -> None:
        self._check_open()
        if spec.name not in self._channels:
            self._gone.discard(spec.name)
            self._channels[spec.name] = _Channel(spec)

    async def publish(
        self,
        channel: str,
        message: Message,
        *,
        not_before: float | None = None,
        priority: int = 0,
    ) -> None:
        if self._closed:
            self._check_open()  # raises
        target = self._channels.get(channel)
        if target is None:
            if channel in self._gone:
                log.debug("dropped %s for %s: its only subscriber has left", message.id, channel)
                return
            target = self._channel(channel)
        entry: Any
        if self._serialize:
            entry = encode_message(message)
            if self._max_bytes is not None and len(entry) > self._max_bytes:
                raise self._too_large(channel, message, len(entry))
        else:
            handed, self.handed = self.handed, None
            # the sender's payload object, if the envelope it was built with is this very one
            entry = handed if handed is not None and handed[0] is message else message
            if self._max_bytes is not None:  # by the frame it would make, as it would travel
                frame = self._frame  # reused: no bytes object per message
                encode_message_into(message, frame)
                if len(frame) > self._max_bytes:
                    raise self._too_large(channel, message, len(frame))
        state = target.state
        logs = state.logs
        held = len(logs[0].entries) if len(logs) == 1 else state.retained()
        if held >= target.spec.max_messages:
            await self._wait_for_space(target)
        now = self.clock.time()
        if not_before is not None and not_before > now:
            self.clock.call_at(not_before, lambda: self._append(target, message, entry, priority))
        elif len(logs) == 1:  # _append for one partition, where nothing is to choose
            log0 = logs[0]
            log0.entries.append(entry)
            log0.times.append(now)
            for sub in target.subs:  # _Channel.wake, inline
                if sub.waiter is not None and not sub.deferred:
                    sub.notify()
        else:
            self._append(target, message, entry, priority)

    def _too_large(self, channel: str, message: Message, size: int) -> MessageTooLarge:
        return MessageTooLarge(
            f"message {message.id} ({message.type}) is {size} bytes, over the "
            f"{self._max_bytes}-byte limit of channel {channel!r}; send a reference to the "
            "data instead"
        )

    def _append(self, channel: _Channel, message: Message, entry: Any, priority: int) -> None:
        spec = channel.spec
        if spec.priorities > 1:  # one log per level, the priority clamped to them
            log = min(max(priority, 0), spec.priorities - 1)
        else:
            log = partition_for(message.partitionkey, spec.partitions)
        channel.state.append(log, entry, self.clock.time())
        channel.wake()

    async def _wait_for_space(self, channel: _Channel) -> None:
        limit = channel.spec.max_messages
        if channel.state.retained() < limit:
            return
        channel.untrimmed = 0
        channel.state.trim()  # trimming is lazy: settled entries may still be held
        if channel.state.retained() < limit:
            return
        deadline = None
        if self._publish_timeout is not None:
            deadline = self.clock.time() + self._publish_timeout
        channel.waiting += 1
        try:
            async with timeout_at(self.clock, deadline):
                while channel.state.retained() >= limit:
                    channel.space.clear()
                    await channel.space.wait()
        except TimeoutError:
            raise ChannelFull(
                f"channel {channel.spec.name!r} holds {limit} unsettled messages (its bound) "
                f"and none was settled within {self._publish_timeout} s; the consumers are "
                "behind: add consumers, raise max_messages, or retry later"
            ) from None
        finally:
            channel.waiting -= 1

    async def subscribe(
        self,
        channel: str,
        *,
        group: str,
        prefetch: int = 64,
        start: Start = "earliest",
        idle_expiry: float | None = None,
    ) -> MemorySubscription:
        self._check_open()
        if prefetch < 1:
            raise ValueError(f"prefetch must be at least 1, got {prefetch}")
        self._gone.discard(channel)
        target = self._channel(channel)
        sub = MemorySubscription(self, target, target.state.group(group, start), prefetch)
        target.subs.add(sub)
        target.members_changed()
        target.wake()
        return sub

    async def delete(self, channel: str, *, group: str | None = None) -> None:
        self._check_open()
        target = self._channels.get(channel)
        if target is None:
            return
        if group is None:
            for sub in list(target.subs):
                sub.break_link(f"channel {channel!r} was deleted")
            self._channels.pop(channel, None)
            self._gone.discard(channel)
            return
        state = target.state.groups.pop(group, None)
        for sub in [s for s in target.subs if s.group is state]:
            sub.break_link(f"group {group!r} of channel {channel!r} was deleted")
        self._trim(target)

    def _trim(self, channel: _Channel) -> None:
        # Trimming walks every group of the channel, so acks call it only every
        # _TRIM_EVERY settlements, unless a publisher is waiting for the room.
        channel.untrimmed = 0
        if channel.state.trim():
            channel.space.set()

    def _leave(self, sub: MemorySubscription) -> None:
        channel = sub.channel
        channel.subs.discard(sub)
        channel.members_changed()
        sub.group.leave(sub.member, self.clock.time())
        name = channel.spec.name
        if channel.spec.ephemeral and not channel.subs and self._channels.get(name) is channel:
            del self._channels[name]
            self._gone.add(name)
        channel.wake()

    def only_group(self, channel: str, group: str) -> bool:
        """Whether ``channel`` has live members and all are of ``group``: a request the
        runtime answers in-process by one of them (in its caller's task, for a channel
        of ``requests="direct"``) then misses no other group's copy."""
        target = self._channels.get(channel)
        if target is None:
            return False
        sole = target.sole  # kept as members come and go: no walk over them per request
        return sole is not None and sole is target.state.groups.get(group)

    def has_channel(self, name: str) -> bool:
        """Whether ``name`` was declared or used (brokers refuse unknown channels with this)."""
        return name in self._channels

    def unsettled(self) -> int:
        """Messages some group has not settled yet, over every channel (for tests)."""
        return sum(
            group.backlog()
            for channel in self._channels.values()
            for group in channel.state.groups.values()
        )

    def disconnect(self) -> None:
        """Simulate a broken link: open subscriptions raise ConnectionLost."""
        for channel in list(self._channels.values()):
            for sub in list(channel.subs):
                sub.break_link()

    async def close(self) -> None:
        for channel in list(self._channels.values()):
            for sub in list(channel.subs):
                await sub.close()
        self._closed = True


class MemorySubscription:
    """One member of a group on a memory channel."""

    def __init__(
        self,
        transport: MemoryTransport,
        channel: _Channel,
        group: GroupState[Any],
        prefetch: int,
    ) -> None:
        self.transport = transport
        self.channel = channel
        self.group = group
        self.member = next(_members)
        self.waiter: asyncio.Future[None] | None = None
        """Set while the delivery loop waits for something to take."""
        self._batch: deque[Taken[Any]] = deque()  # taken, not yet handed on
        self._levels = channel.spec.priorities > 1
        self._state = "open"  # open | closed | broken
        self._why = "link to the memory broker broke"
        self._intake = True  # False once stop_intake was called
        self._sink: Callable[[Delivery], None] | None = None  # see push_to
        self._timer: Any = None  # push_to: the next held-back redelivery's timer
        self.deferred = False
        """push_to: a batch is due at the loop's next turn (a notify now would add nothing)."""
        self._pushed = False  # push_to: a delivery went to the sink at once since the last flush
        self._timer_at = math.inf
        self._error: Exception | None = None  # push_to: a frame that did not decode
        self._prefetch = prefetch
        group.join(self.member, prefetch)

    def notify(self) -> None:
        """Something may be ready to take: wake the delivery loop if it waits."""
        if self._sink is not None and self._state == "open" and self._intake:
            # The first delivery after a quiet spell goes to the sink at once (one task hop
            # to a worker); what follows (a burst of publishes, acks returning credit) is
            # taken in one batch at the loop's next turn. A flush, or a settlement that leaves
            # nothing in flight (see ack_now), starts a quiet spell again: a request/reply
            # exchange then pushes each request at once and schedules no flush that would
            # find nothing.
            if not self._pushed:
                self._pushed = True
                self._push(self._sink)
            elif not self.deferred:
                self.deferred = True
                asyncio.get_running_loop().call_soon(self._flush)
            return
        waiter, self.waiter = self.waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def push_to(self, sink: Callable[[Delivery], None]) -> None:
        """Hand every delivery to ``sink`` as it becomes ready, in the caller of what made it
        ready (a publish, a settlement, a redelivery's timer), instead of through a reading task.

        The dispatcher's reader, in place of iterating: a delivery then reaches a worker in
        one task hop, not two. Returns when intake ends (:meth:`stop_intake`, :meth:`close`);
        raises :class:`~seawall.ConnectionLost` when the link breaks, as iterating would.
        ``sink`` must not wait or raise: it queues the delivery.
        """
        self._raise_if_broken()
        if self._state == "closed" or not self._intake:
            return
        waiter = self.waiter = asyncio.get_running_loop().create_future()
        self._sink = sink
        try:
            self._pump(sink)
            await waiter
        finally:
            self._sink = None
            if self._timer is not None:
                self._timer.cancel()
            self._timer, self._timer_at = None, math.inf
        self._raise_if_broken()
        if self._error is not None:
            raise self._error

    def _raise_if_broken(self) -> None:
        if self._state == "broken":
            name = self.channel.spec.name
            raise ConnectionLost(f"{self._why} while reading {name!r}; subscribe again")

    def _pump(self, sink: Callable[[Delivery], None]) -> None:
        """Take what is ready, up to the credit, and hand it to ``sink`` (see :meth:`push_to`)."""
        clock = self.transport.clock
        name = self.channel.spec.name
        group, member, levels = self.group, self.member, self._levels
        decode_raw = decode_message_raw
        while True:
            now = clock.time()
            batch = group.take_many(member, now, _BATCH)
            if not batch:
                break
            for partition, offset, attempt, entry in batch:
                kind = type(entry)
                payload = None
                if kind is tuple:  # kept as an object, with the sender's payload
                    message, payload = entry
                elif kind is bytes:
                    try:
                        message = decode_raw(entry)
                    except (msgspec.DecodeError, msgspec.ValidationError):
                        message = decode_message(entry)  # raises, saying what is wrong
                else:
                    message = entry
                if levels:
                    sink(Delivery(message, name, 0, attempt, (partition, offset), payload))
                else:
                    sink(Delivery(message, name, partition, attempt, offset, payload))
            if len(batch) < _BATCH:
                # Short of the limit: out of credit or of entries, so asking again would
                # find nothing (``sink`` only queues; an ack it made at once would wake
                # this subscription again). Saves a take per request of a request/reply.
                break
        parts = group.parts
        if len(parts) == 1 and not parts[0].retry:
            return
        due = group.next_retry()
        if due is not None and now < due < self._timer_at:
            # re-checked when it fires: a timer that fires a hair early just arms again
            if self._timer is not None:
                self._timer.cancel()
            self._timer_at = due
            self._timer = clock.call_at(due, self._retry_due)

    def _flush(self) -> None:
        self.deferred = self._pushed = False
        if self._sink is not None and self._state == "open" and self._intake:
            self._push(self._sink)

    def _push(self, sink: Callable[[Delivery], None]) -> None:
        """:meth:`_pump` from a publish or a settlement: a frame that does not decode ends
        :meth:`push_to` with the error (as iterating would), not the caller's publish."""
        try:
            self._pump(sink)
        except Exception as exc:
            self._error = exc
            self._end_push()

    def _retry_due(self) -> None:
        self._timer, self._timer_at = None, math.inf
        self.notify()

    def _stop_notify(self) -> None:
        if self._sink is not None:
            self._end_push()
        else:
            self.notify()

    def _end_push(self) -> None:
        """Intake ended or the link broke: :meth:`push_to` returns (or raises)."""
        waiter, self.waiter = self.waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def __aiter__(self) -> AsyncIterator[Delivery]:
        return self._deliveries()

    async def _deliveries(self) -> AsyncIterator[Delivery]:
        clock = self.transport.clock
        name = self.channel.spec.name
        group, member = self.group, self.member
        while True:
            if self._state == "broken":
                raise ConnectionLost(f"{self._why} while reading {name!r}; subscribe again")
            if self._state == "closed" or not self._intake:
                return
            now = clock.time()
            # Taken in bulk, up to the credit: one call here per batch, not per
            # message. What is left of a batch when the subscription ends is
            # given back uncounted (see _give_back).
            batch = self._batch = deque(group.take_many(member, now, _BATCH))
            if not batch:
                await self._wait(now)
                continue
            while batch and self._state == "open" and self._intake:
                partition, offset, attempt, entry = batch.popleft()
                payload = None
                if isinstance(entry, tuple):
                    message, payload = entry
                else:
                    message = decode_message(entry) if isinstance(entry, bytes) else entry
                if self._levels:  # one partition; the token names the level's log too
                    yield Delivery(message, name, 0, attempt, (partition, offset), payload)
                    continue
                # positional: message, channel, partition, attempt, token (the offset), payload
                yield Delivery(message, name, partition, attempt, offset, payload)

    async def _wait(self, now: float) -> None:
        """Sleep until notified, or until the next held-back redelivery falls due."""
        waiter = self.waiter = asyncio.get_running_loop().create_future()
        due = self.group.next_retry()
        if due is None or due <= now:
            await waiter
            return
        # re-checked after waking: a timer that fires a hair early just loops once more
        timer = self.transport.clock.call_at(due, self.notify)
        try:
            await waiter
        finally:
            timer.cancel()

    def _log_and_offset(self, delivery: Delivery) -> tuple[int, int]:
        """The log (partition, or priority level) and offset a delivery came from."""
        token = delivery.token
        if self._levels:
            assert isinstance(token, tuple)
            return token
        assert isinstance(token, int)
        return delivery.partition, token

    async def ack(self, delivery: Delivery) -> None:
        self.ack_now(delivery)

    def ack_now(self, delivery: Delivery) -> None:
        """:meth:`ack` without a coroutine: the dispatcher settles every delivery through
        this when the subscription has it (an ack here never waits)."""
        if self._levels:
            log, offset = self._log_and_offset(delivery)
        else:  # the token is the offset (see _pump)
            log, offset = delivery.partition, delivery.token  # type: ignore[assignment]
        # The returned credit matters to this member only if it had none left;
        # with several partitions the ack may also hand a partition over.
        group, channel = self.group, self.channel
        starved = not group.members.get(self.member)
        if group.ack(self.member, log, offset):
            if not self.deferred and group.members.get(self.member) == self._prefetch:
                self._pushed = False  # nothing in flight: a quiet spell, see notify
            channel.untrimmed += 1
            if channel.untrimmed >= _TRIM_EVERY or channel.waiting:
                self.transport._trim(channel)
            if starved or channel.spec.partitions > 1:
                channel.wake()

    async def nack(self, delivery: Delivery, *, delay: float = 0.0) -> None:
        log, offset = self._log_and_offset(delivery)
        clock = self.transport.clock
        when = clock.time() + max(0.0, delay)
        if self.group.nack(self.member, log, offset, when):
            self.channel.wake()

    def _give_back(self) -> None:
        """Return the rest of the current batch as if never taken, before leaving."""
        now = self.transport.clock.time()
        while self._batch:
            taken = self._batch.popleft()
            self.group.untake(self.member, taken.partition, taken.offset, now)

    async def stop_intake(self) -> None:
        """Iteration ends; this member takes nothing more, so what is nacked from now on
        goes to another member or waits for the next (the group log keeps its order)."""
        if self._state == "open":
            self._intake = False
            self._stop_notify()

    def break_link(self, why: str = "link to the memory broker broke") -> None:
        if self._state == "open":
            self._state, self._why = "broken", why
            self._give_back()
            self.transport._leave(self)
            self._stop_notify()

    async def close(self) -> None:
        if self._state == "open":
            self._state = "closed"
            self._give_back()
            self.transport._leave(self)
            self._stop_notify()


def from_url(
    url: str = "memory://",
    *,
    clock: Clock | None = None,
    options: MemoryOptions | Mapping[str, Any] | None = None,
) -> MemoryTransport:
    """``memory://?OPTION=VALUE…``: a new memory transport (the scheme table's factory)."""
    chosen, _ = MemoryOptions.resolve(options, url=url)
    return MemoryTransport(clock=clock, options=chosen)
