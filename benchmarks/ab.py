"""``python -m benchmarks.ab [--against REF]``: this tree's in-process figures beside
another commit's, in one run.

A change that moves code around (issue 12's layout) must not slow the hot path. This
runs the in-process workloads of :mod:`benchmarks.workloads` — the ``asyncio.Queue``
anchor, publish → handler and sequential request/reply on ``memory://`` — on two trees:
this one, and ``REF`` checked out into a temporary git worktree (default ``635d616``,
main before the layout change). Every run is a fresh child process whose tree's own
``src`` and ``benchmarks`` come first on ``sys.path``; each round runs both trees, the
one going first alternating, so a slow patch of the shared machine lands on both. The
table gives medians and the ratio this tree / ``REF``; a ratio from 0.95 to 1.05 is
noise-level on this machine.
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
WORKLOADS = {
    "anchor": ("asyncio.Queue anchor", "objects/s", 200_000),
    "publish": ("publish → handler", "msgs/s", 100_000),
    "request": ("request/reply, sequential", "round trips/s", 20_000),
}
_CHILD = """
import json, sys
from benchmarks.runner import run_once
from benchmarks.workloads import Settings, publish_to_handler, queue_anchor, request_reply
runs = {"anchor": queue_anchor, "publish": publish_to_handler, "request": request_reply}
key, count = sys.argv[1], int(sys.argv[2])
settings = Settings(count=count, time_limit=5.0)
run_once(runs[key], Settings(count=max(1, count // 10), time_limit=5.0))
print(json.dumps(run_once(runs[key], settings).rate))
"""


def rate(tree: Path, key: str, count: int) -> float:
    """One warmed-up run of workload ``key`` on ``tree``'s code, in a fresh process."""
    env = {**os.environ, "PYTHONPATH": f"{tree / 'src'}{os.pathsep}{tree}"}
    done = subprocess.run(
        [sys.executable, "-c", _CHILD, key, str(count)],
        cwd=tree,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return float(json.loads(done.stdout.strip().splitlines()[-1]))


def compare(old: Path, rounds: int, scale: float) -> dict[str, dict[str, list[float]]]:
    """Rates per workload and tree over ``rounds`` rounds, the first tree alternating."""
    trees = {"this tree": ROOT, "REF": old}
    rates: dict[str, dict[str, list[float]]] = {k: {t: [] for t in trees} for k in WORKLOADS}
    for n in range(rounds):
        order = list(trees) if n % 2 == 0 else list(reversed(trees))
        for key, (_, _, count) in WORKLOADS.items():
            for name in order:
                rates[key][name].append(rate(trees[name], key, max(1, round(count * scale))))
        print(f"round {n + 1}/{rounds} done", file=sys.stderr, flush=True)
    return rates


def table(rates: dict[str, dict[str, list[float]]], ref: str) -> str:
    lines = [
        f"| workload | this tree | {ref} | ratio |",
        "|---|---:|---:|---:|",
    ]
    for key, (label, unit, _) in WORKLOADS.items():
        new = statistics.median(rates[key]["this tree"])
        old = statistics.median(rates[key]["REF"])
        lines.append(f"| {label} | {new:,.0f} {unit} | {old:,.0f} {unit} | {new / old:.3f}x |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.ab", description=__doc__)
    parser.add_argument("--against", default="635d616", help="the commit to compare with")
    parser.add_argument("--rounds", type=int, default=7, help="rounds, each tree once (7)")
    parser.add_argument("--scale", type=float, default=1.0, help="multiply message counts")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="seawall-ab-") as tmp:
        old = Path(tmp) / "ref"
        subprocess.run(
            ["git", "worktree", "add", "--detach", "--quiet", str(old), args.against],
            cwd=ROOT,
            check=True,
        )
        try:
            rates = compare(old, args.rounds, args.scale)
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(old)], cwd=ROOT)
    print(f"medians of {args.rounds} rounds, one fresh process per run, order alternating\n")
    print(table(rates, args.against))
    return 0


if __name__ == "__main__":
    sys.exit(main())
