"""Which partitions of a Redis channel a group member reads: leases and locks.

Each member renews a lease (its score in the group's ``members`` sorted set,
by the server's clock) every ``rebalance`` seconds and prunes leases older
than ``lease``; it owns partition ``p`` through the lock key
``…:lock:<group>:<p>`` set with ``NX PX lease`` and renewed with the lease,
so two members never read one partition at once. Who should own what follows
:func:`seawall._transport.assignment.wanted` over the live members. A member giving a
partition up stops reading it, waits until it holds none of its entries and
no read it sent may still bring one, and only then deletes the lock; the new
owner, which tries every 20 ms while it lacks a partition, takes it then.
Every read of a member also counts the group's members (``ZCARD``, in the
read's pipeline), so a busy member starts a round as soon as someone joins or
leaves, not at its next heartbeat.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING

from ..._clock import wait_until
from ..._exceptions import TransportError
from ..._transport.assignment import wanted
from ._wire import round_trip, translated

if TYPE_CHECKING:
    from ._subscription import RedisSubscription

__all__ = ["Ownership"]

log = logging.getLogger("seawall.transports.redis")

_WANTING = 0.02  # seconds between rounds while a partition this member should own is locked


class Ownership:
    """The partitions one member of a group owns, agreed through Redis leases and locks."""

    def __init__(self, sub: RedisSubscription, lease: float, every: float) -> None:
        self.sub = sub
        self.me = sub.consumer
        self.lease_ms = max(1, int(lease * 1000))
        self.every = min(every, lease / 3)
        self.locks: set[int] = set()
        self.missing = False  # whether a partition this member should own is still locked
        self.members = 0  # live members at the last round
        self.changed = asyncio.Event()
        self.stopped = False
        keys = sub.channel.keys
        self._members = keys.members(sub.group)
        self._lock = {p: keys.lock(sub.group, p) for p in range(sub.channel.partitions)}

    async def join(self) -> None:
        """Take part: a member alone owns every partition before subscribe returns."""
        await self.round()

    async def run(self) -> None:
        """Renew and rebalance every ``every`` seconds (or when woken) until :meth:`stop`."""
        clock = self.sub.transport.clock
        while not self.stopped:
            self.changed.clear()
            every = _WANTING if self.missing else self.every
            await wait_until(clock, self.changed, clock.time() + every)
            if not self.stopped:
                await self.round()

    def stop(self) -> None:
        self.stopped = True
        self.changed.set()

    async def round(self) -> None:
        """One heartbeat: renew the lease and locks, then give and take partitions."""
        held = sorted(self.locks)
        with translated(f"renewing the lease of {self.me}"):
            members, lost = await self.sub.transport.script(
                "heartbeat",
                [self._members, *(self._lock[p] for p in held)],
                [self.me, self.lease_ms],
            )
        for key in lost:
            partition = next(p for p, k in self._lock.items() if k.encode() == key)
            log.warning("%s lost partition %d: its lock ran out", self.me, partition)
            self.locks.discard(partition)
            await self.sub.release(partition)
        live = {m.decode() for m in members}
        self.members = len(live)
        mine = wanted(self.me, live, self.sub.channel.partitions)
        for partition in sorted(self.locks - mine):
            if await self.sub.release(partition):
                await self._unlock(partition)
        for partition in sorted(mine - self.locks):
            client = await self.sub.transport.link()
            async with round_trip(f"taking partition {partition}", self.sub.transport.api_timeout):
                got = await client.set(self._lock[partition], self.me, nx=True, px=self.lease_ms)
            if got:
                self.locks.add(partition)
                await self.sub.take(partition)
        self.missing = bool(mine - self.locks)

    def heard(self, members: int) -> None:
        """The member count a read saw: a change (a member came or went) starts a round."""
        if members != self.members:
            self.changed.set()

    async def _unlock(self, partition: int) -> None:
        self.locks.discard(partition)
        async with round_trip(
            f"handing partition {partition} over", self.sub.transport.api_timeout
        ):
            await self.sub.transport.script("unlock", [self._lock[partition]], [self.me])

    async def leave(self) -> None:
        """Give up every lock and the lease, so others take over at once (best effort)."""
        with contextlib.suppress(TransportError):
            for partition in sorted(self.locks):
                await self._unlock(partition)
            client = await self.sub.transport.link()
            async with round_trip(f"leaving as {self.me}", self.sub.transport.api_timeout):
                await client.zrem(self._members, self.me)
