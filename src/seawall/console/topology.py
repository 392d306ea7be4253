"""The live topology of a running system, from the heartbeats on the registry channel.

:class:`Topology` is the sans-IO part: fed each
:class:`~seawall.discovery.Announcement` with ``now``, it keeps the live
instances (forgetting one after :data:`~seawall.discovery.EXPIRY` seconds
without a beat, or at once when it says it is leaving) and draws from them
the services, channels, groups and arrows (a service sends to a channel →
a group of a service handles it). :class:`RegistryReader` is the asyncio part:
one consumer group of its own on :data:`~seawall.discovery.REGISTRY_CHANNEL`,
starting at the latest beat, deleted when it closes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from types import TracebackType
from typing import Any, Self

from .._clock import Clock, SystemClock
from .._exceptions import MessageError, TransportError
from .._messages.codec import codec_for
from .._messages.envelope import Message
from .._messages.ids import uuid7
from .._transport import Subscription, Transport
from ..discovery import EXPIRY, HEARTBEAT, REGISTRY_CHANNEL, Announcement
from .deadletters import quietly

__all__ = ["RegistryReader", "Topology", "announced", "read_announcement"]

log = logging.getLogger("seawall.console")


def read_announcement(message: Message) -> Announcement | None:
    """The announcement a registry message carries, or None for anything else."""
    if message.type != Announcement.type_name:
        return None
    try:
        return codec_for(message.datacontenttype).decode(message.data, Announcement)
    except MessageError as exc:
        log.warning("registry: announcement %s skipped: %s", message.id, exc)
        return None


class Topology:
    """The instances heard from lately, and the system they make up."""

    def __init__(self, *, expiry: float = EXPIRY) -> None:
        self.expiry = expiry
        self._beats: dict[str, tuple[Announcement, float]] = {}

    def hear(self, announcement: Announcement, now: float) -> None:
        """Take one heartbeat."""
        if announcement.leaving:
            self._beats.pop(announcement.instance, None)
        else:
            self._beats[announcement.instance] = (announcement, now)

    def live(self, now: float) -> list[Announcement]:
        """The instances that beat within the expiry, by service then instance."""
        for instance, (_, at) in list(self._beats.items()):
            if now - at > self.expiry:
                del self._beats[instance]
        return sorted((a for a, _ in self._beats.values()), key=lambda a: (a.service, a.instance))

    def snapshot(self, now: float) -> dict[str, Any]:
        """The system as plain data: services, channels and arrows (for the page)."""
        live = self.live(now)
        services: dict[str, dict[str, Any]] = {}
        channels: dict[str, dict[str, Any]] = {}
        for a in live:
            _add_instance(services.setdefault(a.service, _service(a.service)), a)
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


def _add_instance(s: dict[str, Any], a: Announcement) -> None:
    s["instances"].append(
        {"instance": a.instance, "host": a.host, "pid": a.pid, "healthy": a.healthy}
    )
    for counter in ("handled", "failed", "dead_lettered", "restarts"):
        s[counter] += getattr(a, counter)
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


class RegistryReader:
    """Reads the registry channel into a :class:`Topology` while open."""

    def __init__(self, transport: Transport, *, clock: Clock | None = None) -> None:
        self.transport = transport
        self.clock = clock or SystemClock()
        self.topology = Topology()
        self.group = f"seawall-console-{uuid7()}"
        self.heard = asyncio.Event()
        """Set on every announcement (a live page waits on it)."""
        self._stack = contextlib.AsyncExitStack()

    async def __aenter__(self) -> Self:
        async with contextlib.AsyncExitStack() as stack:
            sub = await self.transport.subscribe(REGISTRY_CHANNEL, group=self.group, start="latest")
            stack.push_async_callback(
                quietly, self.transport.delete(REGISTRY_CHANNEL, group=self.group)
            )
            stack.push_async_callback(quietly, sub.close())
            tasks = await stack.enter_async_context(asyncio.TaskGroup())
            reader = tasks.create_task(self._read(sub))
            stack.callback(reader.cancel)
            self._stack = stack.pop_all()
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self._stack.aclose()

    async def _read(self, sub: Subscription) -> None:
        try:
            async for delivery in sub:
                announcement = read_announcement(delivery.message)
                if announcement is not None:
                    self.topology.hear(announcement, self.clock.time())
                    self.heard.set()
                await sub.ack(delivery)
        except TransportError as exc:  # the broker went away: the instances expire
            log.warning("registry: stopped reading: %s", exc)

    def snapshot(self) -> dict[str, Any]:
        """The topology now."""
        return self.topology.snapshot(self.clock.time())


async def announced(transport: Transport, seconds: float = HEARTBEAT * 1.5) -> list[Announcement]:
    """The instances that announce themselves within ``seconds`` (a beat and a half)."""
    async with RegistryReader(transport) as reader:
        await asyncio.sleep(seconds)
        return reader.topology.live(reader.clock.time())
