"""Redis key names of a channel (its streams, retry sets and partition locks), and the
channel's layout as read back from its ``meta`` hash.

Sans-IO: plain strings from a channel name. Every key of one channel carries
the channel's token in braces (a Redis Cluster hash tag), so the scripts that
touch several of them address one slot. The layout, for prefix ``seawall``
and channel ``orders.events``::

    seawall:{orders_2eevents}:meta             hash: partitions, max_messages, ephemeral, priorities
    seawall:{orders_2eevents}:<p>              stream of partition (or priority level) p
    seawall:{orders_2eevents}:scheduled        zset: entries published with not_before
    seawall:{orders_2eevents}:added            hash: stream key -> entries ever appended
    seawall:{orders_2eevents}:<p>:retry:<g>    zset: entries of group g waiting to come again
    seawall:{orders_2eevents}:members:<g>      zset: members of group g by last heartbeat
    seawall:{orders_2eevents}:lock:<g>:<p>     string: <member>:<epoch> that owns partition p
    seawall:{orders_2eevents}:epochs:<g>       hash: partition -> last fencing epoch handed out
    seawall:{orders_2eevents}:idle             hash: expiring group -> <expiry ms>:<last left, ms>
"""

from __future__ import annotations

from dataclasses import dataclass

from ..._transport.assignment import token

__all__ = ["PARKED", "Keys", "RedisChannel"]

PARKED = "seawall-parked"
"""Consumer name holding entries given back (nacked, or left by a closed member)
until some member takes them again from the retry set."""


@dataclass(frozen=True, slots=True)
class Keys:
    """The keys of one channel under one prefix."""

    prefix: str
    channel: str

    @property
    def base(self) -> str:
        return f"{self.prefix}:{{{token(self.channel)}}}"

    @property
    def meta(self) -> str:
        return f"{self.base}:meta"

    @property
    def scheduled(self) -> str:
        return f"{self.base}:scheduled"

    @property
    def added(self) -> str:
        """How many entries each stream ever took: their ids count them (see ``_scripts``)."""
        return f"{self.base}:added"

    def stream(self, partition: int) -> str:
        return f"{self.base}:{partition}"

    def retry(self, group: str, partition: int) -> str:
        return f"{self.base}:{partition}:retry:{token(group)}"

    def members(self, group: str) -> str:
        return f"{self.base}:members:{token(group)}"

    def lock(self, group: str, partition: int) -> str:
        return f"{self.base}:lock:{token(group)}:{partition}"

    def epochs(self, group: str) -> str:
        return f"{self.base}:epochs:{token(group)}"

    @property
    def idle(self) -> str:
        """The groups that expire once idle (see :mod:`._idle`)."""
        return f"{self.base}:idle"

    def group(self, group: str) -> str:
        """The consumer group name on the streams (the group's token)."""
        return token(group)

    def all(self, partitions: int, groups: list[str]) -> list[str]:
        """Every key of the channel for these groups (to delete an ephemeral channel)."""
        keys = [self.meta, self.scheduled, self.added]
        for p in range(partitions):
            keys.append(self.stream(p))
            keys += [self.retry(g, p) for g in groups]
            keys += [self.lock(g, p) for g in groups]
        keys += [self.members(g) for g in groups]
        keys += [self.epochs(g) for g in groups]
        return keys

    def expiring(self, lanes: int, group: str) -> list[str]:
        """The keys an ephemeral channel's owner keeps alive, meta first (partition locks
        and members keep their own lease)."""
        keys = [self.meta, self.scheduled]
        for p in range(lanes):
            keys += [self.stream(p), self.retry(group, p)]
        return keys


@dataclass(frozen=True, slots=True)
class RedisChannel:
    """A channel as every process reads it back from its ``meta`` hash."""

    keys: Keys
    partitions: int
    max_messages: int
    ephemeral: bool
    levels: int = 1
    """Priority levels; a channel with several has one partition and a stream per level."""

    @property
    def name(self) -> str:
        return self.keys.channel

    @property
    def lanes(self) -> int:
        """How many streams the channel has: one per partition, or one per priority level."""
        return self.partitions * self.levels
