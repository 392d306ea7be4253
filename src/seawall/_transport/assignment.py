"""Sans-IO pieces of the broker adapters: broker-safe names and partition assignment.

Brokers limit the characters of their object names (NATS subjects and stream
names, Redis keys, AMQP queue names); :func:`token` turns any channel or group
name into one name-safe token, reversibly, so every valid channel name works.

Partition ownership among the members of a group follows the rule of
:class:`seawall._broker.log.GroupState`, with members ordered by id instead of join
order (ids are time-ordered UUIDv7s, so the orders agree while every member
sees the same set): partition ``p`` belongs to the ``p mod n``-th live member.
Members learn who is live from leases they refresh; :class:`Leases` is that
table, fed the times at which each member was last heard of.
"""

from __future__ import annotations

import string
from collections.abc import Iterable

from .._exceptions import ConfigurationError

__all__ = ["Leases", "owners", "token", "wanted"]

_KEPT = frozenset(string.ascii_letters + string.digits + "-")


def token(name: str) -> str:
    """``name`` as one broker-safe token: letters, digits and ``-`` as they are,
    every other character as ``_xx`` per UTF-8 byte (so ``orders.events`` is
    ``orders_2eevents``); distinct names give distinct tokens."""
    if not name:
        raise ConfigurationError("a channel or group name is empty; give it a name")
    return "".join(c if c in _KEPT else "".join(f"_{b:02x}" for b in c.encode()) for c in name)


def owners(members: Iterable[str], partitions: int) -> list[str | None]:
    """Who should own each partition: ``p`` goes to the ``p mod n``-th member by id."""
    order = sorted(set(members))
    if not order:
        return [None] * partitions
    return [order[p % len(order)] for p in range(partitions)]


def wanted(me: str, members: Iterable[str], partitions: int) -> frozenset[int]:
    """The partitions ``me`` should own when ``members`` (with or without ``me``) are live."""
    live = {me, *members}
    return frozenset(p for p, owner in enumerate(owners(live, partitions)) if owner == me)


class Leases:
    """The members of one group that were heard of within ``ttl`` seconds."""

    def __init__(self, ttl: float) -> None:
        if ttl <= 0:
            raise ConfigurationError(f"a lease must last longer than 0 s, got {ttl}")
        self.ttl = ttl
        self._heard: dict[str, float] = {}

    def heard(self, member: str, now: float) -> None:
        """``member`` renewed its lease at ``now``."""
        self._heard[member] = max(now, self._heard.get(member, now))

    def left(self, member: str) -> None:
        """``member`` gave its lease up."""
        self._heard.pop(member, None)

    def live(self, now: float) -> set[str]:
        """Members whose lease still runs at ``now``; expired ones are forgotten."""
        expired = [m for m, at in self._heard.items() if now - at > self.ttl]
        for member in expired:
            del self._heard[member]
        return set(self._heard)
