"""Reporting: the console table, and the JSON and Markdown files of one run.

Every file records where its figures came from (CPU model and cores, Python,
msgspec and seawall versions, git commit) and how they were taken (payload
size, in-flight window, handler concurrency, counts, repeats, time limit).
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec

import seawall

from .runner import Result

__all__ = ["Report", "environment", "now"]


def _cpu_model() -> str:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or "unknown"
    for line in text.splitlines():
        name, _, value = line.partition(":")
        if name.strip() == "model name":
            return value.strip()
    return platform.processor() or "unknown"


def _git(*args: str) -> str | None:
    root = Path(__file__).resolve().parent.parent
    try:
        done = subprocess.run(
            ["git", *args], cwd=root, capture_output=True, text=True, timeout=5, check=True
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip()


def environment() -> dict[str, Any]:
    """The machine and software the figures come from."""
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    status = _git("status", "--porcelain", "--", "src")
    return {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "usable_cores": usable,
        "platform": platform.platform(),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "msgspec": msgspec.__version__,
        "seawall": seawall.__version__,
        "git_commit": _git("rev-parse", "--short", "HEAD"),
        "src_modified": None if status is None else bool(status),
    }


def _number(value: float) -> str:
    return f"{value:,.0f}"


def _verdict(result: Result) -> str:
    passed = result.passed
    return "-" if passed is None else ("pass" if passed else "FAIL")


@dataclass(frozen=True, kw_only=True)
class Report:
    """The figures of one run and where they came from."""

    results: list[Result]
    config: dict[str, Any]
    environment: dict[str, Any]
    command: str
    started: datetime

    # -- rows shared by the console and Markdown tables -----------------------
    def _header(self) -> list[str]:
        return ["benchmark", "median", "unit", "x (a)", "target", "result"]

    def _rows(self) -> list[list[str]]:
        rows = []
        for result in self.results:
            bench = result.benchmark
            target = "" if bench.target is None else bench.target.describe(bench.unit)
            rows.append(
                [
                    bench.label,
                    _number(result.median),
                    bench.unit,
                    f"{result.ratio:.3f}",
                    target,
                    _verdict(result),
                ]
            )
        return rows

    def _notes(self) -> list[str]:
        notes = []
        for result in self.results:
            latency = result.latency_us()
            if latency is not None:
                p50, p99 = latency
                notes.append(
                    f"{result.benchmark.label}: latency p50 {p50:.1f} µs, p99 {p99:.1f} µs"
                )
            if result.truncated:
                notes.append(f"{result.benchmark.label}: some runs stopped at the time limit")
        return notes

    # -- renderings -----------------------------------------------------------
    def table(self) -> str:
        """A plain-text table for the console."""
        rows = [self._header(), *self._rows()]
        widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
        numeric = {1, 3}
        lines = []
        for n, row in enumerate(rows):
            cells = [
                cell.rjust(width) if i in numeric and n else cell.ljust(width)
                for i, (cell, width) in enumerate(zip(row, widths, strict=True))
            ]
            lines.append("  ".join(cells).rstrip())
            if n == 0:
                lines.append("  ".join("-" * width for width in widths))
        lines.extend(self._notes())
        return "\n".join(lines)

    def markdown(self) -> str:
        """The table and its provenance as a Markdown document."""
        env, config = self.environment, self.config
        lines = [
            f"# seawall benchmarks, {self.started:%Y-%m-%d %H:%M} UTC",
            "",
            f"`{self.command}`",
            "",
            "| " + " | ".join(self._header()) + " |",
            "|" + "|".join(["---", "---:", "---", "---:", "---", "---"]) + "|",
            *("| " + " | ".join(row) + " |" for row in self._rows()),
            "",
            *(f"- {note}" for note in self._notes()),
            "",
            "## Machine and software",
            "",
            *(f"- {name}: {value}" for name, value in env.items()),
            "",
            "## Settings",
            "",
            *(f"- {name}: {value}" for name, value in config.items()),
            "",
            "## Rates of every repeat",
            "",
            *(
                f"- {r.benchmark.label}: " + ", ".join(_number(rate) for rate in r.rates)
                for r in self.results
            ),
        ]
        return "\n".join(lines) + "\n"

    def to_json(self) -> dict[str, Any]:
        return {
            "started": self.started.isoformat(),
            "command": self.command,
            "environment": self.environment,
            "config": self.config,
            "results": [self._result_json(r) for r in self.results],
        }

    @staticmethod
    def _result_json(result: Result) -> dict[str, Any]:
        bench = result.benchmark
        latency = result.latency_us()
        return {
            "key": bench.key,
            "label": bench.label,
            "unit": bench.unit,
            "count": bench.settings.count,
            "median": result.median,
            "min": min(result.rates),
            "max": max(result.rates),
            "ratio_to_anchor": result.ratio,
            "target": None if bench.target is None else bench.target.describe(bench.unit),
            "passed": result.passed,
            "p50_us": None if latency is None else latency[0],
            "p99_us": None if latency is None else latency[1],
            "runs": [
                {"operations": s.operations, "seconds": s.seconds, "rate": s.rate}
                | ({} if s.p50_us is None else {"p50_us": s.p50_us, "p99_us": s.p99_us})
                for s in result.samples
            ],
        }

    def write(self, directory: Path) -> list[Path]:
        """Write ``<date>.json`` and ``<date>.md`` into ``directory``; return their paths."""
        directory.mkdir(parents=True, exist_ok=True)
        stem = f"bench-{self.started:%Y-%m-%d-%H%M%S}"
        json_path = directory / f"{stem}.json"
        md_path = directory / f"{stem}.md"
        json_path.write_text(json.dumps(self.to_json(), indent=2, ensure_ascii=False) + "\n")
        md_path.write_text(self.markdown())
        return [json_path, md_path]


def now() -> datetime:
    """The current UTC time, to the second."""
    return datetime.now(UTC).replace(microsecond=0)
