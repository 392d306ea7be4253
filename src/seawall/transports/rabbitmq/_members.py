"""Which member of a group reads which partition of a RabbitMQ channel.

Members of a group on a partitioned channel announce themselves on a fanout
exchange of their group (``seawall.<channel>.g.<group>.members``), each
through a private, exclusive queue bound to it: ``hello`` when joining (every
member answers at once), ``alive`` every third of ``lease`` seconds with the
partitions it holds, ``left`` when leaving. :class:`Roster` (sans-IO) keeps
that table; partition ``p`` goes to the member :func:`seawall._transport.assignment.wanted`
names. A member takes a partition only once no other live member announces
it; it gives one up by cancelling its consumer, waiting until it holds none of
that partition's messages, and announcing. Partition queues are
single-active-consumer queues, so even members that disagree for a moment
never read one partition at once. A member that dies stops being announced
and drops out after ``lease`` seconds; the broker has returned its messages.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import TYPE_CHECKING

import aiormq
import aiormq.abc
import aiormq.exceptions

from ..._clock import wait_until
from ..._transport.assignment import Leases, wanted
from ._layout import Layout
from ._subscription import Source
from ._topology import translated

if TYPE_CHECKING:
    from ._subscription import RabbitMQSubscription

__all__ = ["Membership", "Roster"]

log = logging.getLogger("seawall.transports.rabbitmq")

_IGNORED = (aiormq.exceptions.AMQPError, ConnectionError, asyncio.TimeoutError, RuntimeError)


class Roster:
    """Members heard of, the partitions each announced, and what ``me`` should do."""

    def __init__(self, me: str, partitions: int, lease: float) -> None:
        self.me = me
        self.partitions = partitions
        self.leases = Leases(lease)
        self.holding: dict[str, frozenset[int]] = {}

    def heard(self, member: str, op: str, held: frozenset[int], now: float) -> None:
        """An announcement from ``member`` (``hello``, ``alive`` or ``left``)."""
        if op == "left":
            self.leases.left(member)
            self.holding.pop(member, None)
            return
        self.leases.heard(member, now)
        self.holding[member] = held

    def mine(self, now: float) -> frozenset[int]:
        """The partitions ``me`` should read."""
        return wanted(self.me, self.leases.live(now), self.partitions)

    def free(self, partition: int, now: float) -> bool:
        """Whether no other live member announces ``partition``."""
        live = self.leases.live(now)
        return not any(
            partition in held
            for member, held in self.holding.items()
            if member != self.me and member in live
        )


class Membership:
    """A subscription's part in its group's partition assignment."""

    def __init__(self, sub: RabbitMQSubscription, layout: Layout) -> None:
        self.sub = sub
        self.layout = layout
        transport = sub.transport
        self.roster = Roster(sub.member, layout.partitions, transport.lease)
        self.exchange = layout.members(sub.group)
        self.share = max(1, sub.prefetch // layout.partitions)
        self.holds: set[int] = set()  # read or still held while being handed over
        self.changed = asyncio.Event()
        self._amqp: aiormq.abc.AbstractChannel | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopped = False

    async def join(self) -> None:
        """Announce this member, hear the others for a moment, take its partitions."""
        connection = await self.sub.transport.connection()
        with translated(f"joining group {self.sub.group!r} on {self.layout.channel!r}"):
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
        await asyncio.sleep(min(0.1, self.roster.leases.ttl / 10))  # the others answer
        await self._rebalance()
        self._task = asyncio.get_running_loop().create_task(self._run())

    def _closed(self, _: object) -> None:
        if self._amqp is not None:  # not closed by leave(): the others stop hearing us
            self.sub.lost("RabbitMQ closed the channel its group membership runs on")

    async def _announce(self, op: str) -> None:
        amqp = self._amqp
        if amqp is None or amqp.is_closed:
            return
        body = json.dumps({"m": self.roster.me, "op": op, "held": sorted(self.holds)})
        await amqp.basic_publish(body.encode(), exchange=self.exchange, routing_key="")

    async def _heard(self, msg: aiormq.abc.DeliveredMessage) -> None:
        try:
            note = json.loads(msg.body)
            member, op, held = str(note["m"]), str(note["op"]), frozenset(note["held"])
        except (ValueError, KeyError, TypeError):
            log.warning("ignored a malformed announcement on %s: %r", self.exchange, msg.body)
            return
        self.roster.heard(member, op, held, self.sub.transport.clock.time())
        if op == "hello" and member != self.roster.me:
            with contextlib.suppress(*_IGNORED):
                await self._announce("alive")
        self.changed.set()

    def settled(self, partition: int) -> None:
        """A delivery of ``partition`` was settled: a hand-over may now finish."""
        if partition in self.holds and not self.sub.owns(partition):
            self.changed.set()

    async def _run(self) -> None:
        clock = self.sub.transport.clock
        every = self.roster.leases.ttl / 3
        renew_at = clock.time() + every
        try:
            while not self._stopped:
                self.changed.clear()
                if clock.time() >= renew_at:
                    await self._announce("alive")
                    renew_at = clock.time() + every
                await self._rebalance()
                await wait_until(clock, self.changed, renew_at)
        except Exception as exc:
            log.warning("partition assignment of %s failed (%r)", self.roster.me, exc)
            await self.sub.break_link(f"its partition assignment failed ({exc!r})")

    async def _rebalance(self) -> None:
        sub = self.sub
        now = sub.transport.clock.time()
        mine = self.roster.mine(now)
        before = set(self.holds)
        for partition in sorted(self.holds - mine):
            await sub.stop_reading(sub.queues[partition])
            if sub.held[partition] == 0:
                await sub.retire(sub.queues[partition])
                self.holds.discard(partition)
        for partition in sorted(mine - self.holds):
            if self.roster.free(partition, now) and sub.open:
                await sub.read(self._source(partition))
                self.holds.add(partition)
        if self.holds != before:
            await self._announce("alive")

    def _source(self, partition: int) -> Source:
        return Source(self.sub.queues[partition], partition, self.share)

    async def stop(self) -> None:
        """End the background work (within a broker round trip)."""
        self._stopped = True
        self.changed.set()
        task, self._task = self._task, None
        if task is not None and task is not asyncio.current_task():
            await asyncio.wait({task}, timeout=2.0)
            task.cancel()

    async def leave(self) -> None:
        """Tell the others at once, so they take this member's partitions over now."""
        self.holds.clear()
        with contextlib.suppress(*_IGNORED):
            await self._announce("left")
        amqp, self._amqp = self._amqp, None
        if amqp is not None:
            with contextlib.suppress(*_IGNORED):
                await amqp.close()
