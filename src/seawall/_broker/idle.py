"""Which groups expire once idle, and when (sans-IO).

A group subscribed with ``idle_expiry`` is deleted by the broker once it has had
no member for that many seconds. :class:`IdleGroups` keeps, per (channel,
group), the expiry and the time its last member left (or the broker started,
for a group recovered from the store, which has no member then); the engine
tells it when members join and leave and deletes what :meth:`IdleGroups.due`
returns. A group without an expiry is never here.

The store keeps each expiry beside the group's positions, as the position of
:data:`EXPIRY_PART` (in milliseconds), so it survives a restart without a table
of its own, and a broker that predates it ignores that row (it is past every
partition).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

__all__ = ["EXPIRY_PART", "IdleGroups", "expiry_ms"]

EXPIRY_PART = 1 << 20
"""The partition number under which the store keeps a group's idle expiry."""

GroupKey = tuple[str, str]
"""(channel, group)"""


def expiry_ms(seconds: float) -> int:
    """An expiry as the store keeps it: whole milliseconds, rounded up, at least 1."""
    if not seconds > 0:
        raise ValueError(f"idle_expiry must be more than 0 seconds, got {seconds}")
    return max(1, math.ceil(seconds * 1000))


@dataclass
class IdleGroups:
    """Expiring groups, and since when each has had no member."""

    expiries: dict[GroupKey, float] = field(default_factory=dict)
    """Seconds each expiring group may stay without a member."""
    idle: dict[GroupKey, float] = field(default_factory=dict)
    """Since when each expiring group without a member has had none."""

    def expiring(self, key: GroupKey, seconds: float, now: float) -> None:
        """``key`` is a group that expires after ``seconds`` without a member (none yet)."""
        self.expiries[key] = seconds
        self.idle[key] = now

    def joined(self, key: GroupKey) -> None:
        """A member joined the group."""
        self.idle.pop(key, None)

    def left(self, key: GroupKey, now: float) -> None:
        """The group's last member left."""
        if key in self.expiries:
            self.idle[key] = now

    def forget(self, channel: str, group: str | None = None) -> None:
        """The group (or every group of ``channel``) was deleted."""
        doomed = [k for k in self.expiries if k[0] == channel and group in (None, k[1])]
        for key in doomed:
            del self.expiries[key]
            self.idle.pop(key, None)

    def next_due(self) -> float | None:
        """When the next idle group expires, or None if none is idle."""
        return min((since + self.expiries[k] for k, since in self.idle.items()), default=None)

    def due(self, now: float) -> list[GroupKey]:
        """The idle groups whose expiry has run out at ``now``."""
        return [k for k, since in self.idle.items() if since + self.expiries[k] <= now]
