"""The embedded transport: the durable broker running inside this process.

``embedded://./data`` keeps every channel in a SQLite file under ``./data``
(see :mod:`seawall._broker.store` for the format and :mod:`seawall._broker.store_writer` for
group commit), with the broker logic of :mod:`seawall._broker.engine`. It needs no
server: the default for single-process systems, tests and notebooks. Several
processes share one broker through the broker server and ``seawall://``
instead; two processes must never open the same directory (a lock file says
which process holds it).

What a publish acknowledgement means follows the ``sync`` policy:

``always``
    fsynced before the acknowledgement, committed as soon as the writer is free.
``batch`` (default)
    fsynced before the acknowledgement, commits gathered for up to ``window``
    seconds (2 ms) so many publishes share one fsync; a group is committed
    at once when nobody else is writing or when as many publishes are queued
    as shared the last fsync.
``none``
    acknowledged on receipt, written within ``window``: a crash of this process
    loses what was acknowledged in that window.

A publish is deduplicated by its message id (a dead letter or a request sent
again on purpose by a key of its own, :mod:`seawall._transport.dedupe`): one
whose id the channel stored in the last ``dedupe_window`` seconds (120; 0
turns it off) is acknowledged without being stored again, across restarts too.

Its options are :class:`~seawall.transports.EmbeddedOptions` (the policy,
the window and the broker's bounds), from code or from the URL's query:
``embedded://./data?sync=always&window=0.005`` (:func:`from_url`).

A channel declared with ``ChannelSpec(sync_requests=False)`` (a service with
``Service(..., sync_requests=False)``) has its requests (messages with a reply
channel and a deadline) committed without fsync under ``always`` and ``batch``:
they survive a crash of this process, not a power loss, and cost no fsync of
their own on the way to the responder.

A channel declared with ``ChannelSpec(requests="direct")`` (a service with
``Service(..., requests="direct")``) goes further: its requests are never written.
The broker hands each to a live member of every group from memory
(:mod:`seawall._broker.direct`), and drops it when the group has none; a request
held by a member when this process dies is lost with it, and its caller, waiting
with the deadline, times out and asks again (the responder's reply cache answers
a repeat it already handled). Its other messages are stored as always.

A group subscribed with ``idle_expiry`` is deleted by the broker once it has
had no member that long, on time (``Capabilities.group_expiry``); its expiry
is stored with it, and after a restart it counts from the broker's start.

The transport opens the broker on first use; :meth:`EmbeddedTransport.close`
flushes what is pending and closes the store.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any, Unpack
from urllib.parse import urlsplit

from .._broker.direct import DIRECT
from .._broker.engine import Broker, BrokerLimits, Member
from .._broker.log import Taken
from .._clock import Clock, SystemClock
from .._exceptions import ConfigurationError, ConnectionLost
from .._fsync import SyncPolicy
from .._messages.envelope import Message, decode_message, encode_message
from .._transport import (
    MAX_PRIORITIES,
    Capabilities,
    ChannelSpec,
    Delivery,
    Durability,
    Start,
    is_request,
    partition_for,
)
from .._transport.dedupe import dedupe_key
from ._options import EmbeddedOptions, EmbeddedSettings

__all__ = [
    "EmbeddedOptions",
    "EmbeddedSubscription",
    "EmbeddedTransport",
    "SyncPolicy",
    "from_url",
]

_DURABILITY: dict[SyncPolicy | None, Durability] = {
    "always": Durability.LOCAL_FSYNC,
    "batch": Durability.LOCAL_FSYNC,
    "none": Durability.MEMORY,
    None: Durability.MEMORY,
}


class EmbeddedTransport:
    """A broker in this process; durable under ``path``, or in memory when it is None."""

    def __init__(
        self,
        path: str | Path | None,
        *,
        clock: Clock | None = None,
        limits: BrokerLimits | None = None,
        options: EmbeddedOptions | Mapping[str, Any] | None = None,
        **settings: Unpack[EmbeddedSettings],
    ) -> None:
        given = EmbeddedOptions.coerce(options, where="options")
        if limits is not None:  # the bounds as one object, as before options
            given = given.merged(asdict(limits), where="limits")
        chosen, _ = EmbeddedOptions.resolve(given, settings=settings)
        self.options = chosen
        """What this broker runs with (keyword arguments over ``options``)."""
        self.path = None if path is None else Path(path)
        self.sync: SyncPolicy = chosen.sync
        self.window = chosen.window
        self.clock = clock or SystemClock()
        self.limits = chosen.limits()
        self._broker: Broker | None = None
        self._opening = asyncio.Lock()
        self._subscriptions: set[EmbeddedSubscription] = set()
        self._capabilities = Capabilities(
            durability=_DURABILITY[None if path is None else chosen.sync],
            partitions=True,
            delayed_redelivery=True,
            delayed_delivery=True,
            max_message_bytes=self.limits.max_message_bytes,
            replay=True,
            priorities=MAX_PRIORITIES,
            group_expiry=True,
        )

    @property
    def capabilities(self) -> Capabilities:
        return self._capabilities

    async def broker(self) -> Broker:
        """The broker, opened (and recovered from disk) on first use."""
        if self._broker is not None:
            return self._broker
        async with self._opening:
            if self._broker is None:
                self._broker = await self._open()
        return self._broker

    async def _open(self) -> Broker:
        if self.path is None:
            broker = Broker(clock=self.clock, storage=None, limits=self.limits)
            await broker.open()
            return broker
        from .._broker.store_writer import StoreWriter  # sqlite only when used

        storage = StoreWriter(self.path, policy=self.sync, window=self.window)
        await storage.__aenter__()
        broker = Broker(clock=self.clock, storage=storage, limits=self.limits)
        await broker.open(storage.recovered)
        return broker

    async def declare(self, spec: ChannelSpec) -> None:
        await (await self.broker()).declare(spec)

    async def publish(
        self,
        channel: str,
        message: Message,
        *,
        not_before: float | None = None,
        priority: int = 0,
    ) -> None:
        broker = await self.broker()
        partition = partition_for(message.partitionkey, broker.partitions(channel))
        await broker.publish(
            channel,
            encode_message(message),
            partition=partition,
            priority=priority,
            key=message.id,
            not_before=not_before,
            request=is_request(message),
            dedupe=dedupe_key(message),
        )

    def publish_calling(
        self,
        channel: str,
        message: Message,
        body: bytes,
        done: Callable[[BaseException | None], None],
        *,
        priority: int = 0,
    ) -> bool:
        """Publish ``message``, already encoded as ``body``, if nothing has to wait; see
        :meth:`Broker.publish_calling` (False: await :meth:`publish` instead)."""
        broker = self._broker
        if broker is None:
            return False
        return broker.publish_calling(
            channel,
            body,
            done,
            partition=partition_for(message.partitionkey, broker.partitions(channel)),
            priority=priority,
            request=is_request(message),
            dedupe=dedupe_key(message),
        )

    def hold_writes(self) -> Callable[[], None] | None:
        """Hold the store's appends until the returned function is called, to hand them
        to the writer together (see ``StoreWriter.hold``); None when there is no store."""
        broker = self._broker
        storage = None if broker is None else broker.storage
        hold = getattr(storage, "hold", None)
        if hold is None:
            return None
        hold()
        release: Callable[[], None] = getattr(storage, "release")  # noqa: B009
        return release

    async def subscribe(
        self,
        channel: str,
        *,
        group: str,
        prefetch: int = 64,
        start: Start = "earliest",
        idle_expiry: float | None = None,
    ) -> EmbeddedSubscription:
        broker = await self.broker()
        member = await broker.subscribe(
            channel, group=group, prefetch=prefetch, start=start, idle_expiry=idle_expiry
        )
        sub = EmbeddedSubscription(self, member)
        self._subscriptions.add(sub)
        return sub

    async def delete(self, channel: str, *, group: str | None = None) -> None:
        await (await self.broker()).delete(channel, group=group)

    def has_channel(self, name: str) -> bool:
        """Whether ``name`` exists (the broker server refuses unknown channels with this)."""
        return self._broker is not None and self._broker.has_channel(name)

    def unsettled(self) -> int:
        """Messages some group has not settled yet, over every channel (for tests)."""
        return 0 if self._broker is None else self._broker.unsettled()

    def disconnect(self) -> None:
        """Simulate a broken link: open subscriptions raise ConnectionLost."""
        for sub in list(self._subscriptions):
            sub.member.leave("broken")

    async def close(self) -> None:
        """Close every subscription (their deliveries come again), then the broker."""
        self._subscriptions.clear()
        if self._broker is not None:
            await self._broker.close()


def from_url(
    url: str,
    *,
    clock: Clock | None = None,
    options: EmbeddedOptions | Mapping[str, Any] | None = None,
) -> EmbeddedTransport:
    """``embedded://DIR?OPTION=VALUE…`` (the scheme table's factory); see EmbeddedOptions."""
    chosen, rest = EmbeddedOptions.resolve(options, url=url)
    parts = urlsplit(rest)
    path = parts.netloc + parts.path
    if not path:
        raise ConfigurationError(
            f"{rest!r} names no directory; write embedded://./data or embedded:///abs/path"
        )
    return EmbeddedTransport(path, clock=clock, options=chosen)


class EmbeddedSubscription:
    """One member of a group on an embedded channel."""

    def __init__(self, transport: EmbeddedTransport, member: Member) -> None:
        self.transport = transport
        self.member = member
        self.name = member.channel.spec.name
        self._intake = True  # False once stop_intake was called

    def __aiter__(self) -> AsyncIterator[Delivery]:
        return self._deliveries()

    def _ended(self) -> bool:
        """Whether iteration ends here; raises if it ends with the link or the channel."""
        member = self.member
        if member.state == "broken":
            raise ConnectionLost(f"link to the broker broke while reading {self.name!r}")
        if member.state == "deleted":
            raise ConnectionLost(
                f"channel {self.name!r} or group {member.name!r} of it was deleted; "
                "subscribe again to make it anew"
            )
        return member.state == "closed" or not self._intake

    async def takes(self) -> AsyncIterator[tuple[int, Taken[bytes]]]:
        """The deliveries as the broker takes them, not decoded: the partition a
        :class:`Delivery` would name, and what :meth:`ack_taken` and :meth:`nack_taken`
        settle. The broker server's pump, which sends the entries as they are stored."""
        member = self.member
        shared = member.group.shared
        while not self._ended():
            taken = member.take()
            if taken is None:
                await member.wait()
                continue
            yield 0 if shared or taken.partition == DIRECT else taken.partition, taken

    def ack_taken(self, taken: Taken[bytes]) -> None:
        """Ack a delivery :meth:`takes` gave, without a coroutine."""
        self.member.ack(taken.partition, taken.offset)

    def nack_taken(self, taken: Taken[bytes], delay: float = 0.0) -> None:
        """Nack a delivery :meth:`takes` gave, without a coroutine."""
        self.member.nack(taken.partition, taken.offset, delay)

    async def _deliveries(self) -> AsyncIterator[Delivery]:
        async for partition, taken in self.takes():
            yield Delivery(
                message=decode_message(taken.entry),
                channel=self.name,
                partition=partition,
                attempt=taken.attempt,
                token=taken,  # names the log (partition or priority level) and offset
            )

    async def ack(self, delivery: Delivery) -> None:
        taken = delivery.token
        assert isinstance(taken, Taken)
        self.ack_taken(taken)

    async def nack(self, delivery: Delivery, *, delay: float = 0.0) -> None:
        taken = delivery.token
        assert isinstance(taken, Taken)
        self.nack_taken(taken, delay)

    async def stop_intake(self) -> None:
        """Iteration ends; this member takes nothing more (the group log keeps the order
        of what is nacked from now on)."""
        self._intake = False
        self.member.wake.set()

    async def close(self) -> None:
        self.transport._subscriptions.discard(self)
        self.member.leave("closed")
