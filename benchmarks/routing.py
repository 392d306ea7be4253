"""``python -m benchmarks.routing``: request p99 by routing strategy, one instance slowed 10x.

Three instances of one service (each a :class:`seawall.System` of its own
with its own link, handling one request at a time, as a CPU-bound service
would) and a caller, on a private nats-server (or ``--transport``; memory:// is no anchor here: its
shared channel hands work to whichever member's loop runs first) in one
process on the real clock. Two instances take ``--fast`` seconds per request,
the third ten times as long. The caller sends requests at a fixed rate (open
loop: a slow answer does not slow the sending, so queueing shows in the
latencies as it would with independent clients) and measures each reply's
latency. At each rate of ``--rates`` every strategy runs ``--seconds`` in
turn, ``--rounds`` times interleaved; the tables give medians over rounds of
p50 and p99, and each strategy's p99 cut against the shared channel (today's
default: the broker hands each request to any member with credit, so the slow
one keeps taking its share and queues it).

The condition (issue 16): least-outstanding cuts p99 by at least 3x against the
shared channel, in the same run.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import shutil
import socket
import statistics
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Iterator

from seawall import Command, Document, Service, System
from seawall._messages.ids import uuid7

SERVICE = f"bench-routing-{uuid7()[-8:]}"
STRATEGIES = ("shared", "least-outstanding", "lowest-latency", "round-robin")


class Work(Command, frozen=True):
    n: int


class Done(Document, frozen=True):
    n: int


def worker(name: str, delay: float, concurrency: int) -> Service:
    service = Service(name, concurrency=concurrency)

    @service.command
    async def work(cmd: Work) -> Done:
        await asyncio.sleep(delay)
        return Done(n=cmd.n)

    return service


@contextlib.asynccontextmanager
async def cluster(url: str, fast: float, concurrency: int) -> AsyncIterator[System]:
    """Three instances (the last ten times slower) and a caller, each on its own link."""
    delays = (fast, fast, fast * 10)
    try:
        async with contextlib.AsyncExitStack() as stack:
            for delay in delays:
                service = worker(SERVICE, delay, concurrency)
                await stack.enter_async_context(System(service, transport=url))
            caller = await stack.enter_async_context(System(transport=url))
            assert caller.presence is not None
            while len(caller.presence.registry.live(SERVICE)) < len(delays):  # noqa: ASYNC110
                await asyncio.sleep(0.05)  # the roster has no event to wait on: poll it
            yield caller
    finally:  # once every instance has stopped
        async with System(transport=url, registry=False) as cleaner:
            for channel in (SERVICE, f"{SERVICE}.dlq"):
                await cleaner.transport.delete(channel)


async def run(caller: System, route: str, rate: float, seconds: float) -> tuple[list[float], int]:
    """Latencies (seconds) of requests sent at ``rate`` per second for ``seconds``, and how
    many of them were sent while the caller's roster lacked an instance (a routed request
    then may go to the shared channel instead: the figures are not the strategy's)."""
    ctx = caller.context()
    latencies: list[float] = []
    assert caller.presence is not None
    registry = caller.presence.registry
    blind = 0

    async def one(n: int) -> None:
        nonlocal blind
        sent = time.perf_counter()
        if len(registry.live(SERVICE)) < 3:
            blind += 1
        chosen = None if route == "shared" else route
        await ctx.request(SERVICE, Work(n=n), returns=Done, timeout=60, route=chosen)
        latencies.append(time.perf_counter() - sent)

    start = time.perf_counter()
    count = int(rate * seconds)
    async with asyncio.TaskGroup() as tasks:
        for n in range(count):
            delay = start + n / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.create_task(one(n))
    return latencies, blind


@contextlib.contextmanager
def private_nats() -> Iterator[str]:
    """A nats-server with JetStream of this run's own (others' streams and deletions apart)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    store = tempfile.mkdtemp(prefix="bench-routing-")
    server = subprocess.Popen(
        ["nats-server", "-a", "127.0.0.1", "-p", str(port), "-js", "-sd", store],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(100):
            with socket.socket() as probe, contextlib.suppress(OSError):
                probe.connect(("127.0.0.1", port))
                break
            time.sleep(0.05)
        yield f"nats://127.0.0.1:{port}"
    finally:
        server.terminate()
        server.wait()
        shutil.rmtree(store, ignore_errors=True)


def _quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def main(
    url: str, fast: float, concurrency: int, rates: list[float], seconds: float, rounds: int
) -> None:
    print(
        f"3 instances, handler {fast * 1000:g} ms / {fast * 1000:g} ms / {fast * 10000:g} ms, "
        f"concurrency {concurrency} each, on {url}; {seconds:g} s per run; "
        f"medians of {rounds} rounds"
    )
    async with cluster(url, fast, concurrency) as caller:
        for rate in rates:
            p50: dict[str, list[float]] = {s: [] for s in STRATEGIES}
            p99: dict[str, list[float]] = {s: [] for s in STRATEGIES}
            blind = 0
            for r in range(rounds):
                order = STRATEGIES[r % len(STRATEGIES) :] + STRATEGIES[: r % len(STRATEGIES)]
                for route in order:
                    latencies, missed = await run(caller, route, rate, seconds)  # all replied
                    blind += missed if route != "shared" else 0
                    p50[route].append(_quantile(latencies, 0.5) * 1000)
                    p99[route].append(_quantile(latencies, 0.99) * 1000)
            _table(rate, p50, p99)
            if blind:
                print(
                    f"NOT VALID: {blind} routed requests were sent while the caller's roster "
                    "did not show all 3 instances live (they may have gone to the shared channel)"
                )


def _table(rate: float, p50: dict[str, list[float]], p99: dict[str, list[float]]) -> None:
    anchor = statistics.median(p99["shared"])
    print()
    print(f"{rate:g} requests/s:")
    print()
    print("| route | p50 ms | p99 ms | p99 cut vs shared |")
    print("|---|---:|---:|---:|")
    for route in STRATEGIES:
        median99 = statistics.median(p99[route])
        print(
            f"| {route} | {statistics.median(p50[route]):.1f} | {median99:.1f} | "
            f"{anchor / median99:.1f}x |"
        )
    cut = anchor / statistics.median(p99["least-outstanding"])
    verdict = "met" if cut >= 3 else "NOT met"
    print()
    print(f"least-outstanding cuts p99 {cut:.1f}x against the shared channel (>= 3x: {verdict})")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--transport", default=None, help="a NATS URL (default: a private nats-server of its own)"
    )
    parser.add_argument("--concurrency", type=int, default=1, help="handlers at once, each")
    parser.add_argument("--fast", type=float, default=0.01, help="seconds per fast request")
    parser.add_argument(
        "--rates", default="25,50", help="request rates to run at, per second, comma-separated"
    )
    parser.add_argument("--seconds", type=float, default=4.0, help="seconds per strategy run")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with contextlib.ExitStack() as stack:
        url = args.transport or stack.enter_context(private_nats())
        asyncio.run(
            main(
                url,
                args.fast,
                args.concurrency,
                [float(r) for r in args.rates.split(",")],
                args.seconds,
                args.rounds,
            )
        )
