"""Partition leases of a Redis group: the Redis lease store of partition ownership.

Who reads which partition, and how a partition is handed over, is decided
once for every broker by :mod:`seawall._transport.ownership` and driven by
:class:`seawall._transport.membership.Member`; this module keeps the leases
in keys of the channel (see :mod:`._keys`), each step one script (see
:mod:`._scripts`):

* a member's lease is its score in the group's ``members`` sorted set, by
  the server's clock, renewed every ``rebalance`` seconds (at most a third of
  ``lease``); scores older than ``lease`` are pruned;
* partition ``p``'s lease is the lock key ``…:lock:<group>:<p>``, set only
  when absent to ``<member>:<epoch>`` with a time to live of ``lease``,
  renewed with the member's lease (a lock that no longer holds that value is
  lost) and deleted only by its holder. The fencing epoch is counted up in
  the group's ``epochs`` hash, which never expires, so it only grows.

Redis tells no one when members come and go, so every read of a member also
counts the group's members (``ZCARD``, in the read's pipeline) and
:meth:`RedisLeases.heard` wakes the member when the count changes; a member
lacking a partition whose lock is held asks again every 20 ms.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ..._transport.membership import Heartbeat, Member
from ..._transport.ownership import Ownership
from ._wire import round_trip

if TYPE_CHECKING:
    from ._subscription import RedisSubscription

__all__ = ["RedisLeases", "member"]

_WANTING = 0.02  # seconds between tries at a partition this member should own and is locked


class RedisLeases:
    """One member's leases on one Redis channel and group."""

    def __init__(self, sub: RedisSubscription) -> None:
        self.transport = sub.transport
        self.me = sub.consumer
        self.lease_ms = max(1, int(self.transport.lease * 1000))
        keys = sub.channel.keys
        self._members = keys.members(sub.group)
        self._epochs = keys.epochs(sub.group)
        self._locks = [keys.lock(sub.group, p) for p in range(sub.channel.partitions)]
        self._count = 0  # live members at the last look
        self._changed = asyncio.Event()

    def _value(self, epoch: int) -> str:
        return f"{self.me}:{epoch}"

    async def _script(self, what: str, name: str, keys: Sequence[str], args: Sequence[Any]) -> Any:
        async with round_trip(what, self.transport.api_timeout):
            return await self.transport.script(name, keys, args)

    async def renew(self, held: Mapping[int, int]) -> Heartbeat:
        order = sorted(held)
        values = [self._value(held[p]) for p in order]
        keys = [self._members, *(self._locks[p] for p in order)]
        members, lost = await self._script(
            f"renewing the lease of {self.me}", "heartbeat", keys, [self.me, self.lease_ms, *values]
        )
        gone = {key.decode() if isinstance(key, bytes) else key for key in lost}
        return Heartbeat(self._seen(members), frozenset(p for p in order if self._locks[p] in gone))

    async def members(self) -> frozenset[str]:
        members = await self._script(
            "reading the members", "members", [self._members], [self.lease_ms]
        )
        return self._seen(members)

    def _seen(self, members: list[bytes]) -> frozenset[str]:
        self._count = len(members)
        return frozenset(m.decode() for m in members)

    async def acquire(self, partition: int) -> int | None:
        keys = [self._locks[partition], self._epochs]
        epoch = await self._script(
            f"taking partition {partition}", "take", keys, [self.me, self.lease_ms, partition]
        )
        return int(epoch) or None

    async def release(self, partition: int, epoch: int) -> None:
        lock = [self._locks[partition]]
        await self._script(
            f"handing partition {partition} over", "unlock", lock, [self._value(epoch)]
        )

    async def leave(self, held: Mapping[int, int]) -> None:
        for partition, epoch in sorted(held.items()):
            await self.release(partition, epoch)
        client = await self.transport.link()
        async with round_trip(f"leaving as {self.me}", self.transport.api_timeout):
            await client.zrem(self._members, self.me)

    async def changed(self) -> bool:
        await self._changed.wait()
        self._changed.clear()
        return True

    def heard(self, members: int) -> None:
        """The member count a read saw: a change (a member came or went) wakes the member."""
        if members != self._count:
            self._count = members
            self._changed.set()


def member(sub: RedisSubscription, leases: RedisLeases) -> Member:
    """``sub``'s part in its group's partition ownership, over ``leases``."""
    transport = sub.transport
    ownership = Ownership(
        sub.consumer,
        sub.channel.partitions,
        ttl=transport.lease,
        every=transport.rebalance,
        retry=_WANTING,
    )
    scope = f"{sub.channel.name}/{sub.group}"
    return Member(ownership, leases, sub, transport.clock, scope=scope)
