"""Endpoints and health in the Prometheus text format: ``seawall[prometheus]``.

Part of the edges layer, and the only module that imports ``prometheus_client``.
:func:`render` writes, for a list of :class:`~seawall.observability.metrics.Endpoint`
snapshots (one process's, or every ``seawall up`` child's, labelled by ``process``):

- ``seawall_messages_total{service,channel,group,outcome}``: handled, retried,
  dead_lettered, expired, skipped;
- ``seawall_handler_failures_total{service,channel,group}``: handler calls that raised;
- ``seawall_messages_in_flight{service,channel,group}``: deliveries a consumer holds;
- ``seawall_handlers_running{service,channel,group}`` and
  ``seawall_handler_duration_seconds{service,channel,group}`` (a histogram), when
  the :class:`~seawall.observability.Metrics` middleware is installed;
- ``seawall_live`` and ``seawall_ready`` (1 or 0), from :meth:`seawall.System.health`;
- ``seawall_circuit_breaker_state{target,state}`` (1 for the state it is in, 0 for the
  others) and ``seawall_circuit_breaker_failure_rate{target}``, for each breaker the
  system holds as a caller (``Health.breakers``).

A fresh registry per scrape: the figures are read from the snapshots, never
kept twice.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from .._runtime.health import Health
from .metrics import OUTCOMES, Endpoint

__all__ = ["CONTENT_TYPE", "render"]

CONTENT_TYPE = CONTENT_TYPE_LATEST
"""The ``Content-Type`` of :func:`render`'s output."""

Labelled = tuple[tuple[str, ...], Endpoint]
"""An endpoint with its extra label values (``process`` under ``seawall up``)."""


class _Snapshot(Collector):
    def __init__(self, endpoints: Sequence[Labelled], extra: Sequence[str], health: Health):
        self._endpoints = endpoints
        self._labels = [*extra, "service", "channel", "group"]
        self._health = health

    def collect(self) -> Iterator[Metric]:
        yield from self._counters()
        yield from self._gauges()
        yield self._durations()
        for name, value in (("live", self._health.live), ("ready", self._health.ready)):
            yield GaugeMetricFamily(f"seawall_{name}", f"1 when the system is {name}", int(value))
        yield from self._breakers()

    def _breakers(self) -> Iterator[Metric]:
        state = GaugeMetricFamily(
            "seawall_circuit_breaker_state",
            "1 for the state a caller's circuit breaker of a target is in",
            labels=["target", "state"],
        )
        rate = GaugeMetricFamily(
            "seawall_circuit_breaker_failure_rate",
            "Failure share in the breaker's window (while open: the share that opened it)",
            labels=["target"],
        )
        for breaker in self._health.breakers:
            for each in ("closed", "open", "half-open"):
                state.add_metric([breaker.target, each], int(breaker.state == each))
            rate.add_metric([breaker.target], breaker.failure_rate)
        yield state
        yield rate

    def _counters(self) -> Iterator[Metric]:
        messages = CounterMetricFamily(
            "seawall_messages",
            "Messages an endpoint took, by what became of them",
            labels=[*self._labels, "outcome"],
        )
        failures = CounterMetricFamily(
            "seawall_handler_failures", "Handler calls that raised", labels=self._labels
        )
        for extra, endpoint in self._endpoints:
            labels = [*extra, *endpoint.key]
            for outcome in OUTCOMES:
                messages.add_metric([*labels, outcome], getattr(endpoint, outcome))
            failures.add_metric(labels, endpoint.failed)
        yield messages
        yield failures

    def _gauges(self) -> Iterator[Metric]:
        in_flight = GaugeMetricFamily(
            "seawall_messages_in_flight",
            "Deliveries a consumer holds: handled, queued behind their key, or waiting to retry",
            labels=self._labels,
        )
        running = GaugeMetricFamily(
            "seawall_handlers_running", "Handler calls running now", labels=self._labels
        )
        for extra, endpoint in self._endpoints:
            in_flight.add_metric([*extra, *endpoint.key], endpoint.in_flight)
            running.add_metric([*extra, *endpoint.key], endpoint.running)
        yield in_flight
        yield running

    def _durations(self) -> Metric:
        family = HistogramMetricFamily(
            "seawall_handler_duration_seconds",
            "How long handler calls took",
            labels=self._labels,
        )
        for extra, endpoint in self._endpoints:
            histogram = endpoint.duration
            if histogram is not None:
                buckets = [(le, float(count)) for le, count in histogram.cumulative()]
                family.add_metric([*extra, *endpoint.key], buckets, histogram.total)
        return family


def render(
    endpoints: Sequence[Labelled], health: Health, extra_labels: Sequence[str] = ()
) -> bytes:
    """The Prometheus text exposition of ``endpoints`` and ``health``."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Snapshot(endpoints, extra_labels, health))
    return generate_latest(registry)
