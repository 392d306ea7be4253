"""``python -m benchmarks.instructions``: the in-process rows of issue 14 beside their anchors.

Wall-clock rates on a shared two-core machine swing by 20-40 % from one minute to the
next; instruction counts do not. So every row is given both ways, in one run:

* **rate**: the median of ``--rounds`` fresh processes per workload, the workloads
  taking turns within each round (anchor, publish, request), so a slow patch of the
  machine lands on all of them;
* **instructions per operation**: the instructions valgrind's callgrind counts for a
  run of ``2N`` operations minus those of a run of ``N`` (interpreter start, imports and
  the system's start cancel out), divided by ``N``. Without valgrind the column says so.
  These runs read a *stepped* clock: ``time.time`` and ``time.time_ns`` are replaced
  (before seawall is imported) by counters that move :data:`STEP` (10 µs) per reading.
  Under valgrind's ~50x slowdown the system clock starts a new millisecond every few
  messages, and what is made once per millisecond (a message id's prefix, an envelope's
  time) would be counted on nearly every message, 8-9k instructions a message that a
  full-speed run (a new millisecond every ~100 messages) does not spend. A message reads
  the clock a few times, so the stepped clock still turns the millisecond more often
  than full speed does. The rate column keeps the system clock.

Rows: ``asyncio.Queue`` (the anchor: one object through a bounded queue between two
tasks), ``memory://`` publish → handler (100-byte JSON payload, over ``MemoryTransport()``
as a user gets it by default: messages kept as objects, the sender's payload object
handed to the handler, its class being immutable all the way down; before that default
every envelope was encoded into a frame and decoded, and every payload decoded),
sequential request/reply on ``memory://`` (the same default), and
``import seawall`` beside ``import nats`` (nats-py), each in a fresh interpreter with its
bytecode cached (as an installed package has it; ``PYTHONDONTWRITEBYTECODE`` would make
an editable checkout compile every module on every import).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

_CHILD = """
import asyncio, itertools, json, sys, time
if sys.argv[4:] == ["stepped"]:  # see STEP: set before seawall reads the clocks
    time.time = itertools.count(time.time(), STEP).__next__
    time.time_ns = itertools.count(time.time_ns(), round(STEP * 1e9)).__next__
from benchmarks.workloads import (
    Settings, publish_to_handler, queue_anchor, request_reply, request_reply_inline,
)
import gc
gc.collect()  # the imports' objects out of the collector's way: see _CHILD's note
gc.freeze()
if sys.argv[4:] == ["stepped"]:  # no registry: its heartbeats keep wall time (see STEP)
    import functools, seawall
    seawall.System.__init__ = functools.partialmethod(seawall.System.__init__, registry=False)
runs = {
    "anchor": queue_anchor,
    "publish": publish_to_handler,
    "request": request_reply,
    "inline": request_reply_inline,
}
key, count = sys.argv[1], int(sys.argv[2])
sample = asyncio.run(runs[key](Settings(count=count, time_limit=1e9, warmup=int(sys.argv[3]))))
print(json.dumps(sample.rate))
"""
# The child freezes what the imports left (gc.freeze) and runs with PYTHONHASHSEED=0:
# otherwise whether a full collection of those ~10^5 objects falls into the extra N
# operations of the instruction count moves it by thousands of instructions per operation.
# Its instruction-count runs also leave the service registry out (System(registry=False)):
# the registry announces every second of *wall* time, and under valgrind's slowdown and a
# shared machine's load how many announcements fall into a run is noise of hundreds of
# millions of instructions (it made the 2N run cost less than the N run). The per-request
# registry check (a dict lookup or two) is then not counted.
STEP = 1e-5
"""Seconds the clocks move per reading in the instruction-count runs (see the docstring)."""
_CHILD = _CHILD.replace("STEP", repr(STEP))
WORKLOADS = {
    # key: (label, unit, operations for the rate, N for the instruction count)
    "anchor": ("asyncio.Queue hop (anchor)", "objects/s", 200_000, 5_000),
    "publish": ("memory:// publish → handler, 100-byte payload", "msgs/s", 100_000, 2_000),
    "request": ("memory:// request/reply, sequential", "round trips/s", 20_000, 800),
    "inline": (
        "memory:// request/reply, requests='direct' (inline)",
        "round trips/s",
        40_000,
        1_600,
    ),
}
_COLLECTED = re.compile(r"Collected : (\d+)")


def _env(cache: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPYCACHEPREFIX"] = str(cache)
    env["PYTHONHASHSEED"] = "0"
    env["PYTHONPATH"] = f"{ROOT / 'src'}{os.pathsep}{ROOT}"
    return env


def _run(args: list[str], env: dict[str, str]) -> str:
    done = subprocess.run(args, env=env, cwd=ROOT, capture_output=True, text=True, check=True)
    return done.stdout + done.stderr


def rate(key: str, count: int, env: dict[str, str]) -> float:
    """One run of workload ``key`` in a fresh process (1,000 untimed operations first)."""
    out = _run([sys.executable, "-c", _CHILD, key, str(count), "1000"], env)
    return float(out.strip().splitlines()[-1])


def instructions(args: list[str], env: dict[str, str]) -> int:
    """Instructions callgrind counts for the whole of ``python args``."""
    out = _run(["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", *args], env)
    found = _COLLECTED.search(out)
    if found is None:
        raise RuntimeError(f"callgrind printed no count:\n{out[-2000:]}")
    return int(found.group(1))


def per_operation(key: str, n: int, env: dict[str, str]) -> float:
    """Instructions per operation of ``key``: a run of 2n minus a run of n, over n."""
    base = [sys.executable, "-c", _CHILD, key]
    once = instructions([*base, str(n), "200", "stepped"], env)
    twice = instructions([*base, str(2 * n), "200", "stepped"], env)
    return (twice - once) / n


def import_seconds(module: str, env: dict[str, str]) -> float:
    """Wall seconds of ``python -c 'import module'`` minus those of ``python -c pass``."""
    import time

    def once(code: str) -> float:
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], env=env, cwd=ROOT, check=True)
        return time.perf_counter() - start

    return once(f"import {module}") - once("pass")


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.instructions", description=__doc__)
    parser.add_argument("--rounds", type=int, default=5, help="fresh processes per row (5)")
    parser.add_argument("--scale", type=float, default=1.0, help="multiply operation counts")
    parser.add_argument("--imports", type=int, default=21, help="fresh imports per module (21)")
    parser.add_argument(
        "--only",
        default="",
        help=f"comma-separated rows to run, of {','.join(WORKLOADS)} (default: all; the "
        "anchor always runs, as the ratios need it); with --imports 0 for a quick look",
    )
    args = parser.parse_args()
    workloads = _chosen(args.only)
    has_valgrind = shutil.which("valgrind") is not None
    with tempfile.TemporaryDirectory(prefix="seawall-pyc-") as tmp:
        env = _env(Path(tmp))
        _run([sys.executable, "-c", "import seawall, nats, benchmarks.workloads"], env)
        rates: dict[str, list[float]] = {key: [] for key in workloads}
        imports: dict[str, list[float]] = {"nats": [], "seawall": []}
        for n in range(args.rounds):
            for key in workloads:
                count = WORKLOADS[key][2]
                rates[key].append(rate(key, max(1, round(count * args.scale)), env))
            print(f"round {n + 1}/{args.rounds} done", file=sys.stderr, flush=True)
        for n in range(args.imports):
            for module in ("nats", "seawall") if n % 2 == 0 else ("seawall", "nats"):
                imports[module].append(import_seconds(module, env))
        counts: dict[str, float] = {}
        import_counts: dict[str, int] = {}
        if has_valgrind:
            for key in workloads:
                n_ir = WORKLOADS[key][3]
                counts[key] = per_operation(key, max(1, round(n_ir * args.scale)), env)
            for module in ("pass", "import nats", "import seawall") if args.imports else ():
                import_counts[module] = instructions([sys.executable, "-c", module], env)
    print(_table(args, rates, counts, imports, import_counts, has_valgrind))
    return 0


def _chosen(only: str) -> list[str]:
    """The workloads ``--only`` names, in table order, the anchor first."""
    if not only:
        return list(WORKLOADS)
    names = {name.strip() for name in only.split(",") if name.strip()}
    unknown = names - set(WORKLOADS)
    if unknown:
        raise SystemExit(f"--only: unknown rows {sorted(unknown)}; choose from {list(WORKLOADS)}")
    return [key for key in WORKLOADS if key == "anchor" or key in names]


def _memory_mode() -> str:
    """Which way the rows' ``MemoryTransport()`` holds messages, from its own options."""
    from seawall import MemoryTransport

    if MemoryTransport().options.serialize:
        return "MemoryTransport() default, serialize=True (envelopes and payloads encoded)"
    return (
        "MemoryTransport() default, serialize=False (messages kept as objects, "
        "immutable payloads handed over)"
    )


def _met(ok: bool) -> str:
    return "met" if ok else "missed"


def _table(
    args: argparse.Namespace,
    rates: dict[str, list[float]],
    counts: dict[str, float],
    imports: dict[str, list[float]],
    import_counts: dict[str, int],
    has_valgrind: bool,
) -> str:
    median = {key: statistics.median(values) for key, values in rates.items()}
    anchor, anchor_ir = median["anchor"], counts.get("anchor")
    lines = [
        f"rates: medians of {args.rounds} fresh processes per row, rows taking turns; "
        "instructions: callgrind, a run of 2N operations minus a run of N, over N, "
        f"on a stepped clock ({STEP * 1e6:g} µs a reading; rates: the system clock)",
        f"memory:// rows: {_memory_mode()}",
        "",
        "| work | rate (median) | x anchor | instructions / op | anchor's / this | target |",
        "|---|---:|---:|---:|---:|---|",
    ]
    # (minimum rate, minimum ratio to the anchor): each condition judged on its own, the
    # instruction ratio being the one the "Done when" names (wall clock is noisy)
    targets: dict[str, tuple[float, float | None]] = {
        "publish": (200_000, 0.2),
        "request": (40_000, None),
        "inline": (40_000, None),
    }
    for key in rates:
        label, unit = WORKLOADS[key][:2]
        rate_, ir = median[key], counts.get(key)
        ratio = rate_ / anchor
        ir_text = f"{ir:,.0f}" if ir is not None else "no valgrind"
        ir_ratio = (anchor_ir / ir) if ir and anchor_ir else None
        verdict = ""
        if key in targets:
            min_rate, min_ratio = targets[key]
            checks = [f"≥ {min_rate:,.0f}/s: {_met(rate_ >= min_rate)}"]
            if min_ratio is not None:
                if ir_ratio is not None:
                    checks.append(f"instructions ≥ {min_ratio}x: {_met(ir_ratio >= min_ratio)}")
                checks.append(f"rate ≥ {min_ratio}x: {_met(ratio >= min_ratio)}")
            verdict = "; ".join(checks)
        lines.append(
            f"| {label} | {rate_:,.0f} {unit} | {ratio:.3f}x | {ir_text} | "
            f"{'' if ir_ratio is None else f'{ir_ratio:.3f}x'} | {verdict} |"
        )
    if not imports["nats"]:
        return "\n".join(lines)
    nats, ours = statistics.median(imports["nats"]), statistics.median(imports["seawall"])
    lines += [
        "",
        f"imports: medians of {args.imports} fresh interpreters each, taking turns, "
        "minus an empty interpreter's start; bytecode cached",
        "",
        "| import | wall (median) | instructions | x import nats | target |",
        "|---|---:|---:|---:|---|",
    ]
    base = import_counts.get("pass", 0)
    for module, seconds in (("nats", nats), ("seawall", ours)):
        total = import_counts.get(f"import {module}")
        ir_text = f"{total - base:,}" if total is not None else "no valgrind"
        ratio = seconds / nats
        ir_ratio = ""
        if total is not None and module == "seawall":
            ir_ratio = (
                f", instructions {(total - base) / (import_counts['import nats'] - base):.3f}x"
            )
        verdict = ""
        if module == "seawall":
            verdict = f"≤ 1.0x ({'met' if ratio <= 1.0 else 'missed'})"
        lines.append(
            f"| import {module} | {seconds * 1000:.1f} ms | {ir_text} | "
            f"{ratio:.3f}x{ir_ratio} | {verdict} |"
        )
    if not has_valgrind:
        lines.append(
            "\nvalgrind is not installed: no instruction counts (apt-get install valgrind)"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
