"""Partition leases of a RabbitMQ group: announcements, and single-active-consumer queues.

Who reads which partition, and how a partition is handed over, is decided
once for every broker by :mod:`seawall._transport.ownership` and driven by
:class:`seawall._transport.membership.Member`. RabbitMQ has no
compare-and-set to keep a lease with, so its lease store is a roster that
every member keeps from its peers' announcements, with the broker's
single-active-consumer queues as the backstop:

* Members of a group announce themselves on a fanout exchange of their group
  (``seawall.<channel>.g.<group>.members``), each through a private,
  exclusive queue bound to it: ``hello`` when joining (every member answers
  at once), ``alive`` every third of ``lease`` seconds and whenever its
  leases change, ``left`` when leaving. An announcement names the partitions
  its member holds (``held``) and the epochs it knows (``epochs``: its own
  leases', else the highest it heard of). :class:`Roster` (sans-IO) keeps
  that table; a member not heard of for ``lease`` seconds is gone.
* A member takes a partition only while no other live member announces it,
  under the next epoch after the highest it heard of, and announces it at
  once. Two members that took one partition in the same moment learn it from
  each other's announcements: at its next renewal the one whose claim is
  older (a lower epoch; at equal epochs, the higher id) counts its lease as
  lost. So the epochs are only as monotonic as announcements reach everyone
  in time: the store learns of a stale take, it cannot refuse one. What
  keeps two members from reading one partition at once is the queue: a
  group's partition queues have ``x-single-active-consumer``, so RabbitMQ
  delivers to one consumer of a queue at a time.
* A member giving a partition up cancels its consumer (nothing more comes to
  it once the cancel is confirmed), waits until it holds none of that
  partition's messages, then closes the AMQP channel that read it and
  announces. A member that dies stops being announced and drops out after
  ``lease`` seconds; the broker has returned its messages.

The lease store protocol fits loosely: renewing is announcing, and the
members and leases of others are what was heard, so :class:`Announcements`
answers from its roster without a round trip.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING

import aiormq
import aiormq.abc
import aiormq.exceptions

from ..._transport.assignment import Leases
from ..._transport.membership import Heartbeat, Member
from ..._transport.ownership import Ownership
from ._layout import Layout
from ._subscription import Source
from ._topology import translated

if TYPE_CHECKING:
    from ._subscription import RabbitMQSubscription

__all__ = ["Announcements", "Membership", "PartitionQueues", "Roster"]

log = logging.getLogger("seawall.transports.rabbitmq")

_IGNORED = (aiormq.exceptions.AMQPError, ConnectionError, asyncio.TimeoutError, RuntimeError)


class Roster:
    """Members heard of, the leases each announced, and the highest epochs heard of."""

    def __init__(self, me: str, lease: float) -> None:
        self.me = me
        self.leases = Leases(lease)
        self.holding: dict[str, dict[int, int]] = {}  # member -> partition -> epoch
        self.epochs: dict[int, int] = {}  # partition -> highest epoch heard of

    def heard(
        self, member: str, op: str, held: Mapping[int, int], now: float, epochs: Mapping[int, int]
    ) -> None:
        """An announcement from ``member`` (``hello``, ``alive`` or ``left``)."""
        for partition, epoch in (*epochs.items(), *held.items()):
            self.epochs[partition] = max(epoch, self.epochs.get(partition, 0))
        if op == "left":
            self.leases.left(member)
            self.holding.pop(member, None)
            return
        self.leases.heard(member, now)
        self.holding[member] = dict(held)

    def live(self, now: float) -> frozenset[str]:
        """The members heard of within the lease, ``me`` included."""
        return frozenset(self.leases.live(now)) | {self.me}

    def _claims(self, partition: int, now: float) -> list[tuple[str, int]]:
        """Other live members announcing ``partition``, with their epochs."""
        live = self.leases.live(now)
        return [
            (member, held[partition])
            for member, held in self.holding.items()
            if member != self.me and member in live and partition in held
        ]

    def free(self, partition: int, now: float) -> bool:
        """Whether no other live member announces ``partition``."""
        return not self._claims(partition, now)

    def take(self, partition: int) -> int:
        """The epoch of a new take of ``partition``: one more than any heard of."""
        epoch = self.epochs[partition] = self.epochs.get(partition, 0) + 1
        return epoch

    def lost(self, held: Mapping[int, int], now: float) -> frozenset[int]:
        """The leases in ``held`` that a newer claim beats: a higher epoch heard of, or a
        live member announcing the same epoch with a lower id."""
        return frozenset(
            partition
            for partition, epoch in held.items()
            if self.epochs.get(partition, 0) > epoch
            or any(e == epoch and m < self.me for m, e in self._claims(partition, now))
        )


class Announcements:
    """The lease store of one member, over its group's announcements."""

    def __init__(self, sub: RabbitMQSubscription, layout: Layout) -> None:
        self.sub = sub
        self.clock = sub.transport.clock
        self.roster = Roster(sub.member, sub.transport.lease)
        self.exchange = layout.members(sub.group)
        self.held: dict[int, int] = {}
        self._amqp: aiormq.abc.AbstractChannel | None = None
        self._changed = asyncio.Event()

    async def open(self) -> None:
        """Announce this member, and hear the others for a moment."""
        connection = await self.sub.transport.connection()
        with translated(f"joining group {self.sub.group!r} on {self.exchange!r}"):
            wrapper = await connection.channel(publisher_confirms=False)
            amqp = self._amqp = await wrapper.get_underlay_channel()
            await amqp.exchange_declare(self.exchange, exchange_type="fanout")
            self.sub.transport.topology.made.add(("exchange", self.exchange))
            declared = await amqp.queue_declare("", exclusive=True, auto_delete=True)
            assert declared.queue is not None
            await amqp.queue_bind(declared.queue, self.exchange)
            await amqp.basic_consume(declared.queue, self._heard, no_ack=True)
            amqp.closing.add_done_callback(self._closed)
            await self._announce("hello")
        await self.clock.sleep(min(0.1, self.roster.leases.ttl / 10))  # the others answer

    def _closed(self, _: object) -> None:
        if self._amqp is not None:  # not closed by leave(): the others stop hearing us
            self.sub.lost("RabbitMQ closed the channel its group membership runs on")

    async def _announce(self, op: str) -> None:
        amqp = self._amqp
        if amqp is None or amqp.is_closed:
            return
        epochs = {**self.roster.epochs, **self.held}
        note = {"m": self.roster.me, "op": op, "held": sorted(self.held), "epochs": epochs}
        await amqp.basic_publish(json.dumps(note).encode(), exchange=self.exchange, routing_key="")

    async def _heard(self, msg: aiormq.abc.DeliveredMessage) -> None:
        try:
            note = json.loads(msg.body)
            member, op = str(note["m"]), str(note["op"])
            epochs = {int(p): int(e) for p, e in note.get("epochs", {}).items()}
            held = {int(p): epochs.get(int(p), 0) for p in note["held"]}
        except (ValueError, KeyError, TypeError, AttributeError):
            log.warning("ignored a malformed announcement on %s: %r", self.exchange, msg.body)
            return
        self.roster.heard(member, op, held, self.clock.time(), epochs)
        if op == "hello" and member != self.roster.me:
            with contextlib.suppress(*_IGNORED):
                await self._announce("alive")
        self._changed.set()

    async def _say(self, what: str) -> None:
        with translated(what):
            await self._announce("alive")

    async def renew(self, held: Mapping[int, int]) -> Heartbeat:
        self.held = dict(held)
        await self._say(f"announcing {self.roster.me} to {self.exchange!r}")
        now = self.clock.time()
        return Heartbeat(self.roster.live(now), self.roster.lost(held, now))

    async def members(self) -> frozenset[str]:
        return self.roster.live(self.clock.time())

    async def acquire(self, partition: int) -> int | None:
        if not self.roster.free(partition, self.clock.time()):
            return None  # still announced by its previous owner, who is draining it
        epoch = self.held[partition] = self.roster.take(partition)
        await self._say(f"announcing partition {partition} taken")
        return epoch

    async def release(self, partition: int, epoch: int) -> None:
        await self.sub.retire(self.sub.queues[partition])
        self.held.pop(partition, None)
        await self._say(f"announcing partition {partition} given up")

    async def leave(self, held: Mapping[int, int]) -> None:
        """Tell the others at once, so they take every partition of this member now."""
        self.held.clear()
        with contextlib.suppress(*_IGNORED):
            await self._announce("left")
        amqp, self._amqp = self._amqp, None
        if amqp is not None:
            with contextlib.suppress(*_IGNORED):
                await amqp.close()

    async def changed(self) -> bool:
        await self._changed.wait()
        self._changed.clear()
        return True


class PartitionQueues:
    """A subscription's group partition queues, read as partition ownership says."""

    def __init__(self, sub: RabbitMQSubscription, share: int) -> None:
        self.sub = sub
        self.share = share

    async def start_reading(self, partition: int, epoch: int) -> None:
        await self.sub.read(Source(self.sub.queues[partition], partition, self.share))

    async def stop_reading(self, partition: int) -> None:
        await self.sub.stop_reading(self.sub.queues[partition])

    def busy(self, partition: int) -> bool:
        return self.sub.held[partition] > 0


class Membership:
    """A subscription's part in its group's partition ownership."""

    def __init__(self, sub: RabbitMQSubscription, layout: Layout) -> None:
        self.sub = sub
        self.announcements = Announcements(sub, layout)
        queues = PartitionQueues(sub, max(1, sub.prefetch // layout.partitions))
        ownership = Ownership(sub.member, layout.partitions, ttl=sub.transport.lease)
        scope = f"{sub.channel}/{sub.group}"
        self.member = Member(
            ownership, self.announcements, queues, sub.transport.clock, scope=scope
        )

    async def join(self) -> None:
        """Announce this member, take its partitions, and keep at it in the background."""
        await self.announcements.open()
        await self.member.join()
        await self.member.start(self._broke)

    async def _broke(self, exc: Exception) -> None:
        await self.sub.break_link(f"its partition assignment failed ({exc!r})")

    def settled(self, partition: int) -> None:
        """A delivery of ``partition`` was settled: a hand-over may now finish."""
        if not self.sub.owns(partition):
            self.member.wake()

    async def stop(self) -> None:
        """End the background work (within a broker round trip)."""
        await self.member.stopped()

    async def leave(self) -> None:
        """Give every partition up and tell the others at once."""
        await self.member.leave()
