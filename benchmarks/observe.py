"""``python -m benchmarks.observe``: what tracing costs publish → handler, in one run (issue 15).

Three variants of the in-process publish → handler workload
(:func:`benchmarks.workloads.publish_to_handler`, ``memory://``), each run in a
fresh child process, rounds interleaved with the first variant alternating:

- ``REF``: the commit this work branched from (``--against``, default ``0b96da0``),
  checked out into a temporary git worktree, as :mod:`benchmarks.ab` does;
- ``no otel``: this tree with OpenTelemetry made unimportable in the child
  (``sys.modules["opentelemetry"] = None``), no middleware: what every user
  pays for the middleware mechanism (the condition: within 3 % of REF);
- ``tracing, sampling off``: this tree with :class:`seawall.observability.Tracing`
  installed and the OpenTelemetry SDK configured with the ``ALWAYS_OFF`` sampler:
  spans are made but not recorded, trace context still rides in every message
  (the condition: within 15 % of REF).

The rate is messages per CPU-second of the child process (``time.process_time``
around the timed run, system start and drain included), not per wall-clock
second: on this shared two-core machine other work steals the CPU at random,
and CPU time counts only what the code itself costs. The table gives medians,
their spread, and each variant's ratio to REF.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
COUNT = 100_000

_PRELUDE = {
    "ref": "",
    "no-otel": "import sys; sys.modules['opentelemetry'] = None\n",
    "tracing-off": "",
}
_CHILD = """
import json, sys
from benchmarks.runner import run_once
from benchmarks.workloads import Settings, publish_to_handler
variant, count = sys.argv[1], int(sys.argv[2])
middleware = ()
if variant == "tracing-off":
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.sampling import ALWAYS_OFF
    from seawall.observability import Tracing
    middleware = (Tracing(tracer_provider=TracerProvider(sampler=ALWAYS_OFF)),)
if variant == "no-otel":
    import seawall
    assert "opentelemetry" not in sys.modules or sys.modules["opentelemetry"] is None
extra = {"middleware": middleware} if middleware else {}
run_once(publish_to_handler, Settings(count=max(1, count // 10), time_limit=5.0, **extra))
import time
cpu = time.process_time()
sample = run_once(publish_to_handler, Settings(count=count, time_limit=5.0, **extra))
print(json.dumps(sample.operations / (time.process_time() - cpu)))
"""
LABELS = {
    "ref": "REF, as branched",
    "no-otel": "this tree, OpenTelemetry not installed",
    "tracing-off": "this tree, Tracing() with sampling off",
}
LIMITS = {"no-otel": 0.97, "tracing-off": 0.85}


def rate(tree: Path, variant: str, count: int) -> float:
    """One warmed-up run of ``variant`` on ``tree``'s code, in a fresh process."""
    env = {**os.environ, "PYTHONPATH": f"{tree / 'src'}{os.pathsep}{tree}"}
    done = subprocess.run(
        [sys.executable, "-c", _PRELUDE[variant] + _CHILD, variant, str(count)],
        cwd=tree,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return float(json.loads(done.stdout.strip().splitlines()[-1]))


def compare(ref: Path, rounds: int, count: int) -> dict[str, list[float]]:
    trees = {"ref": ref, "no-otel": ROOT, "tracing-off": ROOT}
    rates: dict[str, list[float]] = {variant: [] for variant in trees}
    for n in range(rounds):
        order = list(trees) if n % 2 == 0 else list(reversed(trees))
        for variant in order:
            rates[variant].append(rate(trees[variant], variant, count))
        print(f"round {n + 1}/{rounds} done", file=sys.stderr, flush=True)
    return rates


def table(rates: dict[str, list[float]], ref: str) -> tuple[str, bool]:
    base = statistics.median(rates["ref"])
    lines = [
        "| publish → handler, memory:// | msgs per CPU-s, median | min - max | / REF | condition |",
        "|---|---:|---:|---:|---|",
    ]
    passed = True
    for variant, label in LABELS.items():
        median = statistics.median(rates[variant])
        ratio = median / base
        limit = LIMITS.get(variant)
        verdict = "" if limit is None else ("ok" if ratio >= limit else "MISSED")
        condition = "" if limit is None else f"≥ {limit:.2f} ({verdict})"
        passed = passed and verdict != "MISSED"
        shown = label.replace("REF", ref)
        spread = f"{min(rates[variant]):,.0f} - {max(rates[variant]):,.0f}"
        lines.append(f"| {shown} | {median:,.0f} | {spread} | {ratio:.3f} | {condition} |")
    return "\n".join(lines), passed


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.observe", description=__doc__)
    parser.add_argument("--against", default="0b96da0", help="the commit to compare with")
    parser.add_argument("--rounds", type=int, default=15, help="rounds, each variant once (15)")
    parser.add_argument("--scale", type=float, default=1.0, help="multiply the message count")
    parser.add_argument("--check", action="store_true", help="exit 1 when a condition is missed")
    args = parser.parse_args()
    count = max(1, round(COUNT * args.scale))
    with tempfile.TemporaryDirectory(prefix="seawall-observe-") as tmp:
        ref = Path(tmp) / "ref"
        subprocess.run(
            ["git", "worktree", "add", "--detach", "--quiet", str(ref), args.against],
            cwd=ROOT,
            check=True,
        )
        try:
            rates = compare(ref, args.rounds, count)
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(ref)], cwd=ROOT)
    text, passed = table(rates, args.against)
    print(f"medians of {args.rounds} rounds, {count:,} messages per run, one fresh process each\n")
    print(text)
    return 0 if passed or not args.check else 1


if __name__ == "__main__":
    sys.exit(main())
