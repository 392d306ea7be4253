"""``python -m benchmarks.group_commit``: ``--sync batch`` beside ``--sync always``.

Two broker servers run side by side, each a durable embedded broker in a
directory of its own, one with ``sync=batch`` (the default: commits gathered so
many publishes share one fsync) and one with ``sync=always`` (each commit as
soon as the writer is free). This process connects ``N`` publishers to one of
them, each publishing 100-byte messages one after the other and waiting for
every acknowledgement (an acknowledgement means fsynced under both policies),
for ``--seconds``; the figure is acknowledged publishes per second. ``N`` is
1, 4 and 64; every round measures each ``N`` on both servers, the order of the
two alternating round by round. The group commit must never be slower than
committing alone: the ratio batch / always is printed per ``N`` (median of
the per-round ratios) with the medians of the rates.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from seawall import Message, uuid7
from seawall._server.server import BrokerServer
from seawall.transports.embedded import EmbeddedTransport
from seawall.transports.seawall import SeawallTransport

from .wire import PAYLOAD, line, stop

CHANNEL = "bench.sync"
POLICIES = ("batch", "always")


async def serve(data: str, sync: str) -> None:
    """Run a durable broker server with ``sync`` until stdin closes; print its port."""
    backing = EmbeddedTransport(data, sync=sync, publish_timeout=None)  # type: ignore[arg-type]
    async with BrokerServer(backing, host="127.0.0.1") as server:
        print(server.port, flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    await backing.close()


async def publishers(url: str, count: int, seconds: float) -> float:
    """Acknowledged publishes per second from ``count`` sequential publishers."""
    connections = [await SeawallTransport.connect(url) for _ in range(min(count, 4))]
    done = 0
    until = time.perf_counter() + seconds

    async def publisher(index: int) -> None:
        nonlocal done
        transport = connections[index % len(connections)]
        while time.perf_counter() < until:
            await transport.publish(
                CHANNEL, Message(id=uuid7(), type="bench.Work", source="bench", data=PAYLOAD)
            )
            done += 1

    try:
        await publisher(0)  # warm-up: the channel exists, the writer has run
        done = 0
        until = time.perf_counter() + seconds
        started = time.perf_counter()
        await asyncio.gather(*(publisher(i) for i in range(count)))
        return done / (time.perf_counter() - started)
    finally:
        for transport in connections:
            await transport.close()


def spawn_server(data: Path, sync: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "benchmarks.group_commit", "--serve", str(data), sync],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )


async def main(args: argparse.Namespace) -> None:
    counts = [int(n) for n in args.publishers.split(",")]
    rates: dict[tuple[int, str], list[float]] = {(n, p): [] for n in counts for p in POLICIES}
    with tempfile.TemporaryDirectory(prefix="seawall-bench-") as tmp:
        servers = {p: spawn_server(Path(tmp) / p, p) for p in POLICIES}
        try:
            urls = {p: f"seawall://127.0.0.1:{line(s)}" for p, s in servers.items()}
            for round_ in range(args.rounds):
                order = POLICIES if round_ % 2 == 0 else POLICIES[::-1]
                for n in counts:
                    for policy in order:
                        rate = await publishers(urls[policy], n, args.seconds)
                        rates[n, policy].append(rate)
                        print(
                            f"round {round_ + 1}/{args.rounds}  {n:>3} publishers  "
                            f"sync={policy:<6} {rate:>9,.0f} acks/s",
                            flush=True,
                        )
        finally:
            for server in servers.values():
                stop(server)
    print(
        f"\nacknowledged publishes/s over seawall:// (fsynced under both), 100-byte payload, "
        f"{args.seconds:g} s per measurement, medians of {args.rounds} rounds, order alternating"
    )
    print(f"{'publishers':>10}  {'batch':>9}  {'always':>9}  batch/always  target")
    for n in counts:
        batch, always = rates[n, "batch"], rates[n, "always"]
        ratio = statistics.median(b / a for b, a in zip(batch, always, strict=True))
        verdict = "met" if ratio >= 1.0 else "NOT met"
        print(
            f"{n:>10}  {statistics.median(batch):>9,.0f}  {statistics.median(always):>9,.0f}  "
            f"{ratio:>11.2f}x  >= 1.0x: {verdict}"
        )


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.group_commit", description=__doc__)
    parser.add_argument("--publishers", default="1,4,64", help="concurrencies, comma-separated")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=1.5, help="per measurement")
    parser.add_argument("--serve", nargs=2, metavar=("DATA", "SYNC"), help=argparse.SUPPRESS)
    return parser.parse_args()


if __name__ == "__main__":
    options = parse()
    if options.serve:
        asyncio.run(serve(*options.serve))
    else:
        asyncio.run(main(options))
