"""The live topology of a running system, from the heartbeats on the registry channel.

:class:`Topology` is the sans-IO part: the registry's
:class:`~seawall.discovery.roster.Roster` (fed each
:class:`~seawall.discovery.Announcement` with ``now``, it forgets an instance
after :data:`~seawall.discovery.EXPIRY` seconds without a beat, or at once
when it says it is leaving) and :func:`draw`, which makes of the live
instances the services, channels, groups and arrows (a service sends to a
channel → a group of a service handles it). :class:`RegistryWatch` is the
asyncio part: the registry's own reader, run while the watch is open.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping
from types import TracebackType
from typing import Any, Self

from .._clock import Clock, SystemClock
from .._exceptions import TransportError
from .._messages.ids import uuid7
from .._transport import Transport
from ..discovery import HEARTBEAT, Announcement
from ..discovery.channel import RegistryReader
from ..discovery.roster import Roster

__all__ = ["RegistryWatch", "Topology", "announced", "draw"]

log = logging.getLogger("seawall.console")


class Topology:
    """The instances heard from lately (a :class:`~seawall.discovery.roster.Roster`), and
    the system they make up."""

    def __init__(self, roster: Roster | None = None) -> None:
        self.roster = roster or Roster()

    def hear(self, announcement: Announcement, now: float) -> None:
        """Take one heartbeat."""
        self.roster.feed(announcement, now)

    def live(self, now: float) -> list[Announcement]:
        """The instances that beat within the expiry, by service then instance."""
        found = [e.announcement for e in self.roster.live(now)]
        return sorted(found, key=lambda a: (a.service, a.instance))

    def snapshot(self, now: float, restarts: Mapping[int, int] | None = None) -> dict[str, Any]:
        """The system as plain data: services, channels and arrows (for the page)."""
        return draw(self.live(now), restarts)


def draw(live: list[Announcement], restarts: Mapping[int, int] | None = None) -> dict[str, Any]:
    """Services, channels, groups and arrows (sends → channel → handled by) of ``live``.

    ``restarts``: by pid, the restarts a supervisor outside the instances counted (``seawall
    up`` restarts processes; an instance counts only its own supervisor's restarts).
    """
    services: dict[str, dict[str, Any]] = {}
    channels: dict[str, dict[str, Any]] = {}
    for a in live:
        s = services.setdefault(a.service, _service(a.service))
        _add_instance(s, a, (restarts or {}).get(a.pid, 0))
        for h in a.handles:
            c = channels.setdefault(h.channel, _channel(h.channel))
            c["groups"].setdefault(h.group, set()).add(a.service)
            c["in_flight"] += a.in_flight / max(1, len(a.handles))
            c["rate"] += a.handled_per_s / max(1, len(a.handles))
        for name in a.sends_to:
            channels.setdefault(name, _channel(name))["senders"].add(a.service)
    arrows = sorted(
        {(s, name, "sends") for name, c in channels.items() for s in c["senders"]}
        | {
            (name, s, "handles")
            for name, c in channels.items()
            for members in c["groups"].values()
            for s in members
        }
    )
    return {
        "services": [_finish_service(s) for _, s in sorted(services.items())],
        "channels": [_finish_channel(c) for _, c in sorted(channels.items())],
        "arrows": [{"from": f, "to": t, "kind": k} for f, t, k in arrows],
        "groups": sorted({g for c in channels.values() for g in c["groups"]}),
    }


def _service(name: str) -> dict[str, Any]:
    return {
        "name": name,
        "instances": [],
        "handled": 0,
        "failed": 0,
        "dead_lettered": 0,
        "rate": 0.0,
        "p50_ms": 0.0,
        "p99_ms": 0.0,
        "restarts": 0,
        "healthy": True,
        "breakers": [],
    }


def _add_instance(s: dict[str, Any], a: Announcement, restarted: int) -> None:
    s["instances"].append(
        {"instance": a.instance, "host": a.host, "pid": a.pid, "healthy": a.healthy}
    )
    for counter in ("handled", "failed", "dead_lettered", "restarts"):
        s[counter] += getattr(a, counter)
    s["restarts"] += restarted
    s["rate"] += a.handled_per_s
    s["p50_ms"] = max(s["p50_ms"], a.handler_p50_ms)
    s["p99_ms"] = max(s["p99_ms"], a.handler_p99_ms)
    s["healthy"] = s["healthy"] and a.healthy
    s["breakers"] += [
        {"target": b.target, "state": b.state, "failure_rate": b.failure_rate} for b in a.breakers
    ]


def _finish_service(s: dict[str, Any]) -> dict[str, Any]:
    s["rate"] = round(s["rate"], 1)
    return s


def _channel(name: str) -> dict[str, Any]:
    return {"name": name, "groups": {}, "senders": set(), "rate": 0.0, "in_flight": 0.0}


def _finish_channel(c: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": c["name"],
        "groups": {g: sorted(members) for g, members in sorted(c["groups"].items())},
        "senders": sorted(c["senders"]),
        "rate": round(c["rate"], 1),
        "in_flight": round(c["in_flight"]),
    }


class RegistryWatch:
    """Reads the registry channel into a :class:`Topology` while open.

    The reading is the registry's own :class:`~seawall.discovery.channel.RegistryReader`
    (a group of its own, replaying the recent beats where the transport can, deleted
    on the way out); this adds only the drawing.
    """

    def __init__(self, transport: Transport, *, clock: Clock | None = None) -> None:
        self.clock = clock or SystemClock()
        self.topology = Topology()
        self.reader = RegistryReader(
            transport,
            self.clock,
            instance=f"seawall-console-{uuid7()}",
            roster=self.topology.roster,
            prune=False,  # an observer: the services' own readers tidy up
        )
        self._stack = contextlib.AsyncExitStack()

    async def __aenter__(self) -> Self:
        async with contextlib.AsyncExitStack() as stack:
            tasks = await stack.enter_async_context(asyncio.TaskGroup())
            task = tasks.create_task(self._run())
            stack.callback(task.cancel)
            ready = tasks.create_task(self.reader.ready.wait())
            await asyncio.wait([task, ready], return_when=asyncio.FIRST_COMPLETED)
            ready.cancel()
            self._stack = stack.pop_all()
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self._stack.aclose()

    async def _run(self) -> None:
        try:
            await self.reader.run()
        except TransportError as exc:  # the broker went away: the instances expire
            log.warning("registry: stopped reading: %s", exc)

    def snapshot(self, restarts: Mapping[int, int] | None = None) -> dict[str, Any]:
        """The topology now."""
        return self.topology.snapshot(self.clock.time(), restarts)


async def announced(transport: Transport, seconds: float = HEARTBEAT * 1.5) -> list[Announcement]:
    """The instances that announce themselves within ``seconds`` (a beat and a half)."""
    async with RegistryWatch(transport) as watch:
        await asyncio.sleep(seconds)
        return watch.topology.live(watch.clock.time())
