"""The live instances, as heard on the registry channel (sans-IO).

A :class:`Roster` is fed announcements and the time; it keeps the newest
announcement of each instance and forgets one :data:`EXPIRY` seconds after its
last beat, or at once when it said ``leaving``. It also remembers every service
and channel it has ever heard of (bounded), which is what a request's "does
this service exist" check asks (:meth:`Roster.judge`).

It does no I/O and reads no clock: :class:`~seawall.discovery.reader.RegistryReader`
feeds it from the transport, tests feed it by hand.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Literal

from .announcement import EXPIRY, STARTUP_GRACE, Announcement

__all__ = ["Live", "Roster", "Verdict"]

Verdict = Literal["live", "absent", "unknown", "not-yet"]
"""What the roster says about a target channel: an instance takes it now; none does
now but one has before (requests queue); none ever has; or the roster has not heard
long enough to say."""

MAX_KNOWN = 10_000
"""Most service and channel names remembered as ever announced (oldest forgotten)."""


@dataclass(slots=True)
class Live:
    """One live instance: its newest announcement and when it was first and last heard."""

    announcement: Announcement
    first_seen: float
    last_seen: float


class Roster:
    """The live service instances, fed announcements and ``now``."""

    def __init__(
        self,
        *,
        expiry: float = EXPIRY,
        max_known: int = MAX_KNOWN,
        startup_grace: float = STARTUP_GRACE,
    ) -> None:
        if expiry <= 0:
            raise ValueError(f"a roster's expiry must be positive seconds, got {expiry!r}")
        if startup_grace < 0:
            raise ValueError(
                f"a roster's startup grace must be >= 0 seconds, got {startup_grace!r}"
            )
        self.expiry = expiry
        self.startup_grace = startup_grace
        self.max_known = max_known
        self.generation = 0
        """Counted up whenever an instance joins or leaves (sticky routing rehashes on it)."""
        self._live: dict[str, Live] = {}
        self._known: OrderedDict[str, None] = OrderedDict()
        self._heard_since: float | None = None
        self._caught_up = False

    def listening(self, since: float, *, caught_up: bool = False) -> None:
        """The reader listens since ``since``; ``caught_up``: it replayed the recent history."""
        self._heard_since = since
        self._caught_up = caught_up

    def feed(self, announcement: Announcement, now: float) -> None:
        """Take one heartbeat (or a ``leaving`` notice) heard at ``now``."""
        key = announcement.instance + "/" + announcement.service
        self.remember(announcement)
        if announcement.leaving:
            if self._live.pop(key, None) is not None:
                self.generation += 1
            return
        entry = self._live.get(key)
        if entry is None:
            self._live[key] = Live(announcement, now, now)
            self.generation += 1
        else:
            entry.announcement = announcement
            entry.last_seen = max(entry.last_seen, now)

    def expire(self, now: float) -> list[Announcement]:
        """Forget instances silent for longer than the expiry; return them."""
        gone = [k for k, e in self._live.items() if now - e.last_seen > self.expiry]
        if gone:
            self.generation += 1
        return [self._live.pop(k).announcement for k in gone]

    def live(self, now: float, service: str | None = None) -> list[Live]:
        """The live instances (of ``service``), oldest first."""
        self.expire(now)
        entries: list[Live] = list(self._live.values())
        if service is not None:
            entries = [e for e in entries if e.announcement.service == service]
        return sorted(entries, key=lambda e: (e.announcement.service, e.first_seen))

    def takers(self, now: float, channel: str) -> list[Announcement]:
        """Live instances that take ``channel`` (their service's name, or one they handle)."""
        return [
            e.announcement
            for e in self.live(now)
            if e.announcement.service == channel
            or any(h.channel == channel for h in e.announcement.handles)
        ]

    def known(self, name: str) -> bool:
        """Whether any instance ever announced a service or a channel of this name."""
        return name in self._known

    def judge(self, now: float, channel: str) -> Verdict:
        """What to do with a request to ``channel``: see :data:`Verdict`."""
        if self.takers(now, channel):
            return "live"
        if self.known(channel):
            return "absent"
        if not self.ready(now):
            return "not-yet"
        return "unknown"

    def ready(self, now: float) -> bool:
        """Whether the roster has heard long enough for "never announced" to be believed:
        it listened for its startup grace, and it replayed the recent history or listened
        for a whole expiry period."""
        since = self._heard_since
        if since is None or now - since < self.startup_grace:
            return False
        return self._caught_up or now - since >= self.expiry

    def remember(self, announcement: Announcement) -> None:
        """Note its service and channels as announced once (history: not live)."""
        names = [announcement.service, *(h.channel for h in announcement.handles)]
        known = self._known
        for name in names:
            if name in known:
                known.move_to_end(name)
            else:
                known[name] = None
                if len(known) > self.max_known:
                    known.popitem(last=False)
