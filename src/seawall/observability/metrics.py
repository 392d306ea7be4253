"""Metrics of a seawall system: one snapshot per endpoint, and the middleware that times handlers.

Part of the edges layer. The counters come from the dispatcher's own
:class:`~seawall.Stats` (one statistics object per endpoint, the same the
``seawall up`` table and tests read), read when asked, so counting costs the
hot path nothing; :class:`Metrics`, a :class:`~seawall.Middleware`, adds what
only a wrapper can see: how long each handler call takes (a histogram) and how
many run right now. :func:`snapshot` turns both into plain, mergeable
:class:`Endpoint` values, which :mod:`.exposition` renders for Prometheus and
``seawall up`` children send their supervisor in their status files.

Consumer lag is not among them: the transport interface has no call that
says how far a group is behind, and none of the adapters can tell it without
a broker round trip per scrape. ``in_flight`` (deliveries held by a consumer:
handled, queued behind their key, or waiting for a retry) is the nearest the
runtime knows.

Sans-IO apart from :class:`Metrics` reading its timer: :class:`Histogram` and
the merge functions are pure.
"""

from __future__ import annotations

import time
from bisect import bisect_left
from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING

import msgspec

from .._runtime.middleware import Handling, Middleware, NextHandle

if TYPE_CHECKING:
    from .._runtime.system import System

__all__ = [
    "BUCKETS",
    "OUTCOMES",
    "Endpoint",
    "Histogram",
    "Metrics",
    "ended",
    "merge",
    "snapshot",
]

BUCKETS: tuple[float, ...] = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)
"""Upper bounds (seconds) of the handler-duration histogram; the last bucket is +Inf."""

OUTCOMES = ("handled", "retried", "dead_lettered", "expired", "skipped")
"""What became of each message an endpoint took (the ``outcome`` label)."""

Key = tuple[str, str, str]
"""(service, channel, group): one endpoint."""


class Histogram(msgspec.Struct):
    """Counts of observations per bucket (not cumulative; one more for +Inf), their sum."""

    bounds: tuple[float, ...] = BUCKETS
    counts: list[int] = msgspec.field(default_factory=lambda: [0] * (len(BUCKETS) + 1))
    total: float = 0.0

    def observe(self, value: float) -> None:
        """Count one observation."""
        self.counts[bisect_left(self.bounds, value)] += 1
        self.total += value

    @property
    def count(self) -> int:
        """Observations in all."""
        return sum(self.counts)

    def cumulative(self) -> list[tuple[str, int]]:
        """(``le`` label, observations at or below it) per bucket, ending with ``+Inf``."""
        running, rows = 0, []
        for bound, count in zip((*self.bounds, float("inf")), self.counts, strict=True):
            running += count
            rows.append(("+Inf" if bound == float("inf") else repr(bound), running))
        return rows


class Endpoint(msgspec.Struct, frozen=True):
    """What one endpoint (a service's subscription to a channel as a group) reports."""

    service: str
    channel: str
    group: str
    handled: int = 0
    retried: int = 0
    dead_lettered: int = 0
    expired: int = 0
    skipped: int = 0
    failed: int = 0
    """Handler calls that raised (each retried or dead-lettered, or expired)."""
    in_flight: int = 0
    running: int = 0
    """Handler calls running now (only with :class:`Metrics` installed)."""
    duration: Histogram | None = None
    """Handler call durations (only with :class:`Metrics` installed)."""

    @property
    def key(self) -> Key:
        return (self.service, self.channel, self.group)


class Metrics(Middleware):
    """Times every handler call and counts those running; ``timer`` is injectable for tests."""

    def __init__(self, *, timer: Callable[[], float] = time.perf_counter) -> None:
        self._timer = timer
        self.durations: dict[Key, Histogram] = {}
        self.running: dict[Key, int] = {}

    def handle(self, call: Handling, call_next: NextHandle) -> Awaitable[object]:
        """Time the call (a coroutine of its own only here, where the handler is measured)."""
        return self._timed(call, call_next, (call.service, call.channel, call.group))

    async def _timed(self, call: Handling, call_next: NextHandle, key: Key) -> object:
        running = self.running
        running[key] = running.get(key, 0) + 1
        started = self._timer()
        try:
            return await call_next(call)
        finally:
            running[key] -= 1
            histogram = self.durations.get(key)
            if histogram is None:
                histogram = self.durations[key] = Histogram()
            histogram.observe(self._timer() - started)


def snapshot(system: System, metrics: Metrics | None = None) -> list[Endpoint]:
    """Every endpoint of ``system`` now: its :class:`~seawall.Stats`, and ``metrics``' figures."""
    endpoints = []
    for dispatcher in system.dispatchers:
        stats, spec = dispatcher.stats, dispatcher.spec
        key = (dispatcher.service, spec.channel, spec.group)
        duration = None if metrics is None else metrics.durations.get(key)
        endpoints.append(
            Endpoint(
                *key,
                handled=stats.handled,
                retried=stats.retried,
                dead_lettered=stats.dead_lettered,
                expired=stats.expired,
                skipped=stats.skipped,
                failed=stats.failed,
                in_flight=dispatcher.in_flight,
                running=0 if metrics is None else metrics.running.get(key, 0),
                duration=None if duration is None else msgspec.structs.replace(duration),
            )
        )
    return endpoints


def merge(endpoints: Iterable[Endpoint]) -> list[Endpoint]:
    """Endpoints with the same key summed into one (several processes, or earlier ones)."""
    merged: dict[Key, Endpoint] = {}
    for endpoint in endpoints:
        known = merged.get(endpoint.key)
        merged[endpoint.key] = endpoint if known is None else _add(known, endpoint)
    return list(merged.values())


def ended(endpoint: Endpoint) -> Endpoint:
    """What a process that has exited still counts: its counters, no gauges."""
    return msgspec.structs.replace(endpoint, in_flight=0, running=0)


_SUMMED = ("handled", "retried", "dead_lettered", "expired", "skipped", "failed")


def _add(a: Endpoint, b: Endpoint) -> Endpoint:
    sums: dict[str, object] = {name: getattr(a, name) + getattr(b, name) for name in _SUMMED}
    sums["in_flight"] = a.in_flight + b.in_flight
    sums["running"] = a.running + b.running
    sums["duration"] = _add_histograms(a.duration, b.duration)
    return msgspec.structs.replace(a, **sums)


def _add_histograms(a: Histogram | None, b: Histogram | None) -> Histogram | None:
    if a is None or b is None:
        return a or b
    if a.bounds != b.bounds:
        return a  # different buckets cannot be added; keep one rather than lie
    counts = [x + y for x, y in zip(a.counts, b.counts, strict=True)]
    return Histogram(a.bounds, counts, a.total + b.total)
