"""``python -m benchmarks.log_models``: ``memory://`` beside the embedded broker engine
without a file, on the publish → handler workload, in one run.

Issue 12 asked whether ``memory://`` could run on the engine's log model (the one
``embedded://`` uses, which has priorities and replay) instead of its own lighter
``ChannelState``, on condition that the in-process figures stay within 5 %. This measures
that condition: the same workload (:func:`benchmarks.workloads.publish_to_handler`) over
``MemoryTransport()`` and over ``EmbeddedTransport(None)`` (the engine, nothing on disk),
interleaved rounds, medians.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from collections.abc import Callable

from seawall import Transport
from seawall.transports import EmbeddedTransport, MemoryTransport

from . import workloads
from .runner import run_once

MODELS: dict[str, Callable[[], Transport]] = {
    "memory:// (ChannelState)": MemoryTransport,
    "engine, no file (PagedLog + priorities)": lambda: EmbeddedTransport(None),
}


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.log_models", description=__doc__)
    parser.add_argument("--count", type=int, default=100_000, help="messages per run")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds (5)")
    args = parser.parse_args()
    settings = workloads.Settings(count=args.count, time_limit=5.0)
    rates: dict[str, list[float]] = {name: [] for name in MODELS}
    for _ in range(args.rounds):
        for name, factory in MODELS.items():
            workloads.MemoryTransport = factory  # type: ignore[assignment,misc]
            rates[name].append(run_once(workloads.publish_to_handler, settings).rate)
    first = statistics.median(rates[next(iter(MODELS))])
    print(f"publish → handler, {args.count:,} messages, medians of {args.rounds} rounds\n")
    print("| log model | msgs/s | ratio |\n|---|---:|---:|")
    for name, values in rates.items():
        median = statistics.median(values)
        print(f"| {name} | {median:,.0f} | {median / first:.2f}x |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
