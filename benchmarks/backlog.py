"""Memory of the embedded broker holding a large backlog for a stalled consumer.

A child process opens ``embedded://DIR`` (sync ``batch``), subscribes one
consumer that takes its ``prefetch`` deliveries and never settles them, and
publishes ``count`` 100-byte messages, ``window`` awaited together. It
reports its resident set size before publishing (the anchor: the interpreter,
seawall and SQLite loaded, nothing stored) and after, and its peak
(``VmHWM``). The target is a peak under 200 MB with 1,000,000 messages waiting:
the broker keeps a bounded tail of each log in memory and reads older pages
back from disk, so memory must not grow with the backlog.

``python -m benchmarks.backlog [--count N]`` prints one line per figure and
writes ``benchmarks/results/backlog-<time>.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from seawall import ChannelSpec, Message, uuid7
from seawall.transports.embedded import EmbeddedTransport

from .report import now

RESULTS = Path(__file__).resolve().parent / "results"
TARGET_MB = 200.0


def _status_mb(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"/proc/self/status has no {field}")


async def _fill(directory: str, count: int, window: int, prefetch: int) -> dict[str, float]:
    transport = EmbeddedTransport(directory)
    # room for the whole backlog (a channel holds 100,000 by default, then publishers wait)
    await transport.declare(ChannelSpec(name="backlog", max_messages=count + window))
    sub = await transport.subscribe("backlog", group="stalled", prefetch=prefetch)
    held = []
    stream = aiter(sub)
    baseline = _status_mb("VmRSS")
    started = time.perf_counter()
    for first in range(0, count, window):
        await asyncio.gather(
            *(
                transport.publish(
                    "backlog", Message(id=uuid7(), source="bench", type="b", data=b"x" * 100)
                )
                for _ in range(min(window, count - first))
            )
        )
        while len(held) < prefetch:  # the consumer takes its credit's worth, then stalls
            held.append(await anext(stream))
    seconds = time.perf_counter() - started
    figures = {
        "baseline_mb": baseline,
        "rss_mb": _status_mb("VmRSS"),
        "peak_mb": _status_mb("VmHWM"),
        "publish_rate": count / seconds,
        "held": float(len(held)),
    }
    await transport.close()
    return figures


def run(count: int, window: int = 1000, prefetch: int = 64) -> dict[str, float]:
    """Fill a backlog in a fresh child process and return its memory figures."""
    with tempfile.TemporaryDirectory(prefix="seawall-backlog-") as directory:
        child = subprocess.run(
            [
                *(sys.executable, "-m", "benchmarks.backlog", "--child", directory),
                *("--count", str(count), "--window", str(window), "--prefetch", str(prefetch)),
            ],
            capture_output=True,
            text=True,
            check=True,
        )
    figures: dict[str, float] = json.loads(child.stdout.strip().splitlines()[-1])
    return figures


def markdown(count: int, figures: dict[str, float]) -> str:
    peak = figures["peak_mb"]
    verdict = "met" if peak <= TARGET_MB else "NOT met"
    return "\n".join(
        [
            f"## Embedded broker: {count:,} messages of backlog, stalled consumer",
            "",
            "| figure | value |",
            "|---|---|",
            f"| RSS before publishing (anchor) | {figures['baseline_mb']:.0f} MB |",
            f"| RSS after the backlog | {figures['rss_mb']:.0f} MB |",
            f"| peak RSS (VmHWM) | {peak:.0f} MB (target <= {TARGET_MB:.0f} MB: {verdict}) |",
            f"| publish rate while filling (sync=batch, in process) "
            f"| {figures['publish_rate']:,.0f} msgs/s |",
            f"| deliveries held unsettled by the stalled consumer | {figures['held']:.0f} |",
            "",
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.backlog", description=__doc__)
    parser.add_argument("--count", type=int, default=1_000_000)
    parser.add_argument("--window", type=int, default=1000)
    parser.add_argument("--prefetch", type=int, default=64)
    parser.add_argument("--child", metavar="DIR", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        figures = asyncio.run(_fill(args.child, args.count, args.window, args.prefetch))
        print(json.dumps(figures))
        return
    text = markdown(args.count, run(args.count, args.window, args.prefetch))
    print(text)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"backlog-{now():%Y-%m-%d-%H%M%S}.md").write_text(text)


if __name__ == "__main__":
    main()
