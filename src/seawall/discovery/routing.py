"""Routing strategies: which live instance takes a request (sans-IO).

By default a request goes to the service's shared channel and the broker hands
it to any member of the group (``"shared"``). A caller may instead pick one
instance and send to that instance's own channel (:func:`instance_channel`),
which every instance of a service subscribes to besides the shared one:

* ``"round-robin"``: each live instance in turn;
* ``"least-outstanding"``: the one with the fewest of this caller's requests
  still waiting for a reply (ties: the faster reply time seen, then the fewer
  announced in flight);
* ``"lowest-latency"``: the one with the lowest expected wait: the reply time
  this caller has seen (a moving average; one not yet tried counts as its
  announced p50, so new ones get tried) times its outstanding requests plus one,
  so that a fast instance is not sent everything at once until it queues;
* ``"local-first"``: one on this host if any (least outstanding among them),
  otherwise any (least outstanding);
* ``"sticky"``: by the request's key, with rendezvous hashing over the live
  instances (a key stays on its instance until membership changes, and then
  only the keys of the instances that came or went move);
* ``"broadcast"``: every live instance (for ``send`` and ``gather``).

A call chooses with ``route=``; without it, the call policies choose
(``CallPolicy(route=...)``, system-wide and per target, :mod:`seawall.resilience`),
in a system that listens to the registry. The names live in
:mod:`seawall._transport.routes`, below both.

:class:`Router` holds the caller-side figures (outstanding, latency) and picks;
it does no I/O. The runtime asks it, with the live instances from a
:class:`~seawall.discovery.roster.Roster`.
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Sequence
from dataclasses import dataclass

from .._transport.routes import ROUTES, Route, check_route, instance_channel
from .announcement import Announcement

__all__ = ["ROUTES", "Route", "Router", "check_route", "instance_channel"]

LATENCY_WEIGHT = 0.2
"""Weight of a new reply time in an instance's moving average."""


@dataclass(slots=True)
class _Figures:
    outstanding: int = 0
    latency: float | None = None


class Router:
    """One caller's routing state: requests outstanding and reply times, per instance."""

    def __init__(self, *, host: str = "") -> None:
        self.host = host
        self._figures: dict[str, _Figures] = {}
        self._turn = itertools.count()

    def pick(
        self, route: Route, candidates: Sequence[Announcement], key: str | None = None
    ) -> list[Announcement]:
        """The instance(s) to send to: one, every one for ``broadcast``, none if none live."""
        if not candidates:
            return []
        if route == "broadcast":
            return list(candidates)
        if route == "round-robin":
            ordered = sorted(candidates, key=lambda a: a.instance)
            return [ordered[next(self._turn) % len(ordered)]]
        if route == "sticky":
            return [self._sticky(candidates, key)]
        if route == "lowest-latency":
            return [min(candidates, key=self._latency)]
        if route == "local-first":
            local = [a for a in candidates if a.host == self.host]
            return [min(local or candidates, key=self._load)]
        return [min(candidates, key=self._load)]  # least-outstanding (and shared, unused)

    def started(self, instance: str) -> None:
        """A request to ``instance`` was sent."""
        self._figures.setdefault(instance, _Figures()).outstanding += 1

    def finished(self, instance: str, seconds: float | None) -> None:
        """Its reply came after ``seconds`` (None: it failed or timed out)."""
        figures = self._figures.setdefault(instance, _Figures())
        figures.outstanding = max(0, figures.outstanding - 1)
        if seconds is not None:
            old = figures.latency
            figures.latency = seconds if old is None else old + LATENCY_WEIGHT * (seconds - old)

    def outstanding(self, instance: str) -> int:
        """This caller's requests to ``instance`` still waiting for a reply."""
        figures = self._figures.get(instance)
        return 0 if figures is None else figures.outstanding

    def forget(self, live: Sequence[str]) -> None:
        """Drop the figures of instances no longer live (bounded memory)."""
        keep = set(live)
        for instance in [i for i in self._figures if i not in keep]:
            del self._figures[instance]

    def _load(self, a: Announcement) -> tuple[int, float, int, str]:
        return (self.outstanding(a.instance), self._seen(a), a.in_flight, a.instance)

    def _latency(self, a: Announcement) -> tuple[float, int, str]:
        outstanding = self.outstanding(a.instance)
        return (self._seen(a) * (outstanding + 1), outstanding, a.instance)

    def _seen(self, a: Announcement) -> float:
        """The reply time seen from ``a`` (seconds), or its announced handler p50."""
        figures = self._figures.get(a.instance)
        seen = None if figures is None else figures.latency
        return seen if seen is not None else a.handler_p50_ms / 1000

    @staticmethod
    def _sticky(candidates: Sequence[Announcement], key: str | None) -> Announcement:
        token = (key or "").encode()

        def weight(a: Announcement) -> bytes:
            return hashlib.blake2b(token + b"\0" + a.instance.encode(), digest_size=8).digest()

        return max(candidates, key=weight)
