"""A system's presence on the registry: what it announces, and what it hears.

:class:`Presence` describes each service instance of a running system as an
:class:`~seawall.discovery.Announcement` (its subscriptions and message types,
host and pid, and load read from the dispatchers' :class:`~.dispatcher.Stats`:
in flight, handled per second between two beats, handler p50/p99 from the
dispatchers' sampled timings; the channels it sends to: its declared
``depends_on`` and the channels its contexts sent, published, requested or
gathered to since it started, :data:`~.node.SENDS_TO_LIMIT` at most), and runs the
:class:`~seawall.discovery.Announcer` and the
:class:`~seawall.discovery.RegistryReader` as two supervised children. Its
:class:`~seawall.discovery.Registry` is what ``ctx.request`` asks before it
sends. The mechanism lives in :mod:`seawall.discovery`; this is the wiring.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace

from .._exceptions import PermissionDenied, SeawallError
from .._transport import ChannelSpec
from ..discovery import Announcement, Announcer, Handles, Registry, RegistryReader
from ..discovery.roster import Roster
from ..discovery.routing import instance_channel
from .dispatcher import Dispatcher
from .node import Node
from .service import Service, Subscription
from .supervisor import Supervisor

__all__ = ["Presence"]

log = logging.getLogger("seawall.discovery")

RETRY_FIRST = 0.5
RETRY_MAX = 30.0
"""Backoff (seconds) of a registry part that failed, before it runs again."""


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("seawall")
    except PackageNotFoundError:  # pragma: no cover - running from a bare source tree
        return ""


class Presence:
    """Announces a system's service instances and keeps its view of the others."""

    def __init__(
        self, node: Node, services: Sequence[Service], *, system: str, grace: float
    ) -> None:
        self.node = node
        self.services = list(services)
        self.system = system
        self.host = socket.gethostname()
        self.started_at = node.clock.time()
        roster = Roster(startup_grace=grace)
        self.registry = Registry(node.clock, host=self.host, roster=roster)
        self.shared: list[Dispatcher] = []
        """The dispatchers of the services' own channels."""
        self.dispatchers: list[Dispatcher] = []
        """The dispatchers of this instance's channels (routed requests)."""
        self.refused = False
        """The broker refused this client the registry or its instance channels."""
        self._supervisor: Supervisor | None = None
        self._version = _version()
        self._last: dict[str, tuple[float, int]] = {}
        for service in self.services:  # what each sends is counted from now on
            node.sent_to.setdefault(service.name, set())
        self.announcer = Announcer(node.transport, node.clock, self.describe, also=self._hear_own)
        self.reader = RegistryReader(
            node.transport,
            node.clock,
            instance=node.instance,
            roster=self.registry.roster,
            own=lambda a: a.instance == node.instance,
        )

    def instance_subscriptions(self, service: Service) -> list[Subscription]:
        """The subscription of this instance's own channel: the command channel's handlers."""
        return [
            replace(
                spec, channel=instance_channel(service.name, self.node.instance), start="latest"
            )
            for spec in service.subscriptions.values()
            if spec.is_command_channel
        ]

    async def declare(self) -> None:
        """Declare each service's instance channel (ephemeral: it goes with the instance)."""
        try:
            for service in self.services:
                for spec in self.instance_subscriptions(service):
                    await self.node.transport.declare(
                        ChannelSpec(name=spec.channel, ephemeral=True)
                    )
        except PermissionDenied as exc:
            self._refused("instance channels", exc)

    def start(
        self,
        supervisor: Supervisor,
        dispatchers: Sequence[Dispatcher],
        make: Callable[[Service, Subscription], Dispatcher],
    ) -> None:
        """Hear this system's own instances at once, then announce, listen, and take the
        requests routed to this instance (each a dispatcher of its own, made by ``make``)."""
        self.shared = list(dispatchers)
        self._supervisor = supervisor
        if not self.refused:
            for service in self.services:
                for spec in self.instance_subscriptions(service):
                    dispatcher = make(service, spec)
                    self.dispatchers.append(dispatcher)
                    run = self._guard(self._routed(dispatcher), dispatcher.name)
                    supervisor.start(dispatcher.name, run)
        self._hear_own(self.describe())
        name = self.node.instance
        supervisor.start(f"{name}:announce", self._guard(self.announcer.run, "announcing"))
        supervisor.start(f"{name}:registry", self._guard(self.reader.run, "the registry"))

    def _routed(self, dispatcher: Dispatcher) -> Callable[[], Awaitable[None]]:
        """``dispatcher.run``; a dispatcher the broker refuses its channel never runs
        again, so it leaves :attr:`dispatchers` (a drain would wait for it in vain)."""

        async def run() -> None:
            try:
                await dispatcher.run()
            except PermissionDenied:
                self.dispatchers.remove(dispatcher)
                raise

        return run

    async def leave(self) -> None:
        """Say ``leaving`` once, so readers drop these instances at once."""
        if not self.refused:
            with contextlib.suppress(PermissionDenied):
                await self.announcer.beat(leaving=True)

    def _guard(
        self, run: Callable[[], Awaitable[None]], what: str
    ) -> Callable[[], Awaitable[None]]:
        """``run``, which never takes the system down: ended if the broker refuses this
        client the registry (the system goes on without it, as it did before there was
        one), run again after a backoff if it fails otherwise (a broker that lost the
        registry's channels, a link that broke)."""

        async def guarded() -> None:
            delay = RETRY_FIRST
            while True:
                try:
                    await run()
                    return
                except PermissionDenied as exc:
                    self._refused(what, exc)
                    return
                except SeawallError as exc:
                    log.warning("registry: %s failed (%s); again in %.1f s", what, exc, delay)
                await self.node.clock.sleep(delay)
                delay = min(RETRY_MAX, delay * 2)

        return guarded

    def _refused(self, what: str, exc: PermissionDenied) -> None:
        if not self.refused:
            log.warning(
                "registry: the broker refuses this client %s (%s); system %s runs without "
                "announcing itself or taking routed requests: grant it %s to change that",
                what,
                exc,
                self.node.instance,
                "the registry channel and <service>.@* channels",
            )
        self.refused = True

    def describe(self) -> list[Announcement]:
        """One announcement per service of the system, as of now."""
        now = self.node.clock.time()
        return [self._announcement(service, now) for service in self.services]

    def _announcement(self, service: Service, now: float) -> Announcement:
        mine = [d for d in [*self.shared, *self.dispatchers] if d.service == service.name]
        routed = [d for d in self.dispatchers if d.service == service.name and d.ready.is_set()]
        handled = sum(d.stats.handled for d in mine)
        then, before = self._last.get(service.name, (self.started_at, 0))
        self._last[service.name] = (now, handled)
        p50, p99 = _percentiles([t for d in mine for t in d.stats.timings])
        return Announcement(
            service=service.name,
            instance=self.node.instance,
            system=self.system,
            host=self.host,
            pid=os.getpid(),
            started_at=self.started_at,
            seawall_version=self._version,
            handles=tuple(_handles(spec) for spec in service.subscriptions.values()),
            sends_to=self._sends_to(service),
            inbox=routed[0].spec.channel if routed else "",
            in_flight=sum(d.in_flight for d in mine),
            handled=handled,
            failed=sum(d.stats.failed for d in mine),
            dead_lettered=sum(d.stats.dead_lettered for d in mine),
            handled_per_s=(handled - before) / (now - then) if now > then else 0.0,
            handler_p50_ms=p50,
            handler_p99_ms=p99,
            restarts=self._restarts(mine),
            healthy=self._supervisor is None or self._supervisor.healthy,
            breakers=self.node.breaker_states(),
        )

    def _sends_to(self, service: Service) -> tuple[str, ...]:
        """What ``service`` declares it calls (``depends_on``) and what it has sent to."""
        sent = self.node.sent_to.setdefault(service.name, set())
        return tuple(sorted(sent.union(service.depends_on)))

    def _restarts(self, dispatchers: Sequence[Dispatcher]) -> int:
        supervisor = self._supervisor
        if supervisor is None:
            return 0
        return sum(supervisor.restarts.get(d.name, 0) for d in dispatchers)

    def _hear_own(self, announcements: Sequence[Announcement]) -> None:
        now = self.node.clock.time()
        for announcement in announcements:
            self.registry.roster.feed(announcement, now)


def _handles(spec: Subscription) -> Handles:
    types = sorted(f"{cls.type_name}@{cls.type_version}" for cls in spec.handlers)
    return Handles(channel=spec.channel, group=spec.group, types=tuple(types))


def _percentiles(samples: Sequence[float]) -> tuple[float, float]:
    """p50 and p99 of handler times (seconds) in milliseconds; zeros with no samples."""
    if not samples:
        return 0.0, 0.0
    ordered = sorted(samples)
    last = len(ordered) - 1
    return ordered[last // 2] * 1000, ordered[round(last * 0.99)] * 1000
