"""Running the workloads: a warm-up round, interleaved repeats, medians and targets.

Repeats are interleaved (a, b, c, a, b, c, …) rather than run back to back,
so a slow patch of the machine (a noisy neighbour, frequency scaling) lands
on every workload alike and the ratios to the anchor stay fair. Every run
gets its own event loop and starts after ``gc.collect()``.
"""

from __future__ import annotations

import asyncio
import gc
import statistics
from collections.abc import Callable
from dataclasses import dataclass, replace

from .workloads import Sample, Settings, Workload

__all__ = ["Benchmark", "Result", "Target", "measure", "run_once", "summarize"]


@dataclass(frozen=True, kw_only=True)
class Target:
    """The rate a benchmark must reach: absolute, relative to the anchor, or both."""

    min_rate: float | None = None
    min_ratio: float | None = None

    def met(self, rate: float, ratio: float) -> bool:
        """Whether ``rate`` (``ratio`` x the anchor) reaches every bound."""
        return (self.min_rate is None or rate >= self.min_rate) and (
            self.min_ratio is None or ratio >= self.min_ratio
        )

    def describe(self, unit: str) -> str:
        parts = []
        if self.min_ratio is not None:
            parts.append(f"≥ {self.min_ratio:g}x (a)")
        if self.min_rate is not None:
            parts.append(f"≥ {self.min_rate:,.0f} {unit}")
        return " and ".join(parts)


@dataclass(frozen=True, kw_only=True)
class Benchmark:
    """One workload with its settings and target."""

    key: str
    label: str
    unit: str
    workload: Workload
    settings: Settings
    target: Target | None = None


@dataclass(frozen=True, kw_only=True)
class Result:
    """A benchmark's repeats, reduced to what the report shows."""

    benchmark: Benchmark
    samples: list[Sample]
    anchor_rate: float

    @property
    def rates(self) -> list[float]:
        return [s.rate for s in self.samples]

    @property
    def median(self) -> float:
        return statistics.median(self.rates)

    @property
    def ratio(self) -> float:
        """Median rate over the anchor's median rate."""
        return self.median / self.anchor_rate

    @property
    def passed(self) -> bool | None:
        """None when the benchmark has no target."""
        target = self.benchmark.target
        return None if target is None else target.met(self.median, self.ratio)

    @property
    def truncated(self) -> bool:
        """Whether some run hit the time limit before its count."""
        return any(s.operations < self.benchmark.settings.count for s in self.samples)

    def latency_us(self) -> tuple[float, float] | None:
        """Medians over repeats of the per-run p50 and p99 latency, if measured."""
        p50 = [s.p50_us for s in self.samples if s.p50_us is not None]
        p99 = [s.p99_us for s in self.samples if s.p99_us is not None]
        if not p50 or not p99:
            return None
        return statistics.median(p50), statistics.median(p99)


def run_once(workload: Workload, settings: Settings) -> Sample:
    """One run in a fresh event loop, after a full garbage collection."""
    gc.collect()
    return asyncio.run(workload(settings))


def measure(
    benchmarks: list[Benchmark],
    repeats: int,
    progress: Callable[[str], None] = lambda _: None,
) -> dict[str, list[Sample]]:
    """An untimed warm-up run of each benchmark, then ``repeats`` interleaved rounds."""
    for bench in benchmarks:
        warm = replace(bench.settings, count=max(1, bench.settings.count // 10))
        run_once(bench.workload, warm)
    samples: dict[str, list[Sample]] = {bench.key: [] for bench in benchmarks}
    for round_no in range(1, repeats + 1):
        for bench in benchmarks:
            sample = run_once(bench.workload, bench.settings)
            samples[bench.key].append(sample)
            progress(
                f"round {round_no}/{repeats}  {bench.label:<34} {sample.rate:>12,.0f} {bench.unit}"
            )
    return samples


def summarize(
    benchmarks: list[Benchmark], samples: dict[str, list[Sample]], anchor: str
) -> list[Result]:
    """Results in benchmark order, with ratios to the ``anchor`` benchmark's median."""
    anchor_rate = statistics.median(s.rate for s in samples[anchor])
    return [
        Result(benchmark=bench, samples=samples[bench.key], anchor_rate=anchor_rate)
        for bench in benchmarks
    ]
