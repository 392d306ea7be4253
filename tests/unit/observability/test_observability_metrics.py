"""Endpoint snapshots, their histogram and merge, and the Prometheus text they render to."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from seawall import Command, Health, Service
from seawall.observability.exposition import render
from seawall.observability.metrics import Endpoint, Histogram, Metrics, ended, merge, snapshot
from seawall.testing import TestSystem


class Job(Command, frozen=True):
    seconds: float


def test_histogram_buckets_are_upper_bounds() -> None:
    histogram = Histogram(bounds=(0.1, 1.0), counts=[0, 0, 0])
    for value in (0.05, 0.1, 0.5, 3.0):
        histogram.observe(value)
    assert histogram.counts == [2, 1, 1]
    assert histogram.cumulative() == [("0.1", 2), ("1.0", 3), ("+Inf", 4)]
    assert histogram.count == 4
    assert histogram.total == 3.65


def test_merge_sums_counters_gauges_and_histograms_and_ended_drops_gauges() -> None:
    a = Endpoint("s", "c", "g", handled=2, in_flight=3, duration=Histogram((1.0,), [1, 0], 0.5))
    b = Endpoint("s", "c", "g", handled=5, retried=1, in_flight=1)
    other = Endpoint("s", "c", "h", handled=7)
    merged = merge([a, b, other])
    assert [(e.group, e.handled, e.retried, e.in_flight) for e in merged] == [
        ("g", 7, 1, 4),
        ("h", 7, 0, 0),
    ]
    assert merged[0].duration == Histogram((1.0,), [1, 0], 0.5)
    assert ended(a).in_flight == 0
    assert ended(a).handled == 2


async def test_snapshot_reads_stats_and_the_middleware_timings() -> None:
    ticks = iter(range(100))
    svc = Service("timed")

    @svc.command
    async def job(cmd: Job) -> None:
        return None

    metrics = Metrics(timer=lambda: float(next(ticks)))  # each call "takes" 1 s
    ts = TestSystem(svc)
    ts.system.use(metrics)
    async with ts:
        for _ in range(3):
            await ts.context().send("timed", Job(seconds=0))
        await ts.settle()
        (endpoint,) = snapshot(ts.system, metrics)
    assert endpoint.key == ("timed", "timed", "timed")
    assert endpoint.handled == 3
    assert endpoint.running == 0
    assert endpoint.duration is not None
    assert endpoint.duration.count == 3
    assert endpoint.duration.total == 3.0


def test_render_names_labels_and_health() -> None:
    endpoint = Endpoint("s", "c", "g", handled=4, dead_lettered=1, failed=2, duration=Histogram())
    text = render([(("s-1",), endpoint)], Health(live=True, ready=False), ("process",)).decode()
    families = {f.name: f for f in text_string_to_metric_families(text)}
    handled = [s for s in families["seawall_messages"].samples if s.labels["outcome"] == "handled"]
    assert handled[0].labels == {
        "process": "s-1",
        "service": "s",
        "channel": "c",
        "group": "g",
        "outcome": "handled",
    }
    assert handled[0].value == 4
    assert families["seawall_handler_failures"].samples[0].value == 2
    assert families["seawall_ready"].samples[0].value == 0
    assert families["seawall_live"].samples[0].value == 1
    assert families["seawall_handler_duration_seconds"].type == "histogram"
