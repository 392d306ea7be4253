"""``python -m benchmarks.routing``: request p99 by routing strategy, one instance slowed 10x.

Three instances of one service (each a :class:`seawall.System` of its own,
handling one request at a time, as a CPU-bound service would) and a caller,
over ``memory://`` in one process on the real clock. Two instances take
``--fast`` ms per request, the third ten times as long. The caller sends
requests at a fixed rate (open loop: a slow answer does not slow the sending,
so queueing shows in the latencies as it would with independent clients) and
measures each reply's latency. Each strategy runs ``--seconds`` in turn,
``--rounds`` times interleaved; the table gives medians over rounds of p50 and
p99, and each strategy's p99 cut against the shared channel (today's default:
the broker hands each request to any member with credit, so the slow one keeps
taking its share and its backlog).

The condition (issue 16): least-outstanding cuts p99 by at least 3x against the
shared channel, in the same run.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import time
from collections.abc import AsyncIterator

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
    async with contextlib.AsyncExitStack() as stack:
        for delay in delays:
            service = worker(SERVICE, delay, concurrency)
            await stack.enter_async_context(System(service, transport=url))
        caller = await stack.enter_async_context(System(transport=url))
        assert caller.presence is not None
        while len(caller.presence.registry.live(SERVICE)) < len(delays):  # noqa: ASYNC110
            await asyncio.sleep(0.05)  # the roster has no event to wait on: poll it
        try:
            yield caller
        finally:
            for channel in (SERVICE, f"{SERVICE}.dlq"):
                await caller.transport.delete(channel)


async def run(caller: System, route: str, rate: float, seconds: float) -> list[float]:
    """Latencies (seconds) of requests sent at ``rate`` per second for ``seconds``."""
    ctx = caller.context()
    latencies: list[float] = []

    async def one(n: int) -> None:
        sent = time.perf_counter()
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
    return latencies


def _quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def main(
    url: str, fast: float, concurrency: int, rate: float, seconds: float, rounds: int
) -> None:
    p50: dict[str, list[float]] = {s: [] for s in STRATEGIES}
    p99: dict[str, list[float]] = {s: [] for s in STRATEGIES}
    async with cluster(url, fast, concurrency) as caller:
        for r in range(rounds):
            order = STRATEGIES[r % len(STRATEGIES) :] + STRATEGIES[: r % len(STRATEGIES)]
            for route in order:
                latencies = await run(caller, route, rate, seconds)
                p50[route].append(_quantile(latencies, 0.5) * 1000)
                p99[route].append(_quantile(latencies, 0.99) * 1000)
                await asyncio.sleep(0.5)  # let backlogs drain between strategies
    anchor = statistics.median(p99["shared"])
    print(
        f"3 instances, handler {fast * 1000:g} ms / {fast * 1000:g} ms / {fast * 10000:g} ms, "
        f"concurrency {concurrency} each, on {url}; {rate:g} requests/s for {seconds:g} s; "
        f"medians of {rounds} rounds"
    )
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
    print(f"least-outstanding cuts p99 {cut:.1f}x against the shared channel (≥ 3x: {verdict})")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--transport", default="nats://127.0.0.1:4222")
    parser.add_argument("--concurrency", type=int, default=1, help="handlers at once, each")
    parser.add_argument("--fast", type=float, default=0.01, help="seconds per fast request")
    parser.add_argument("--rate", type=float, default=50.0, help="requests per second")
    parser.add_argument("--seconds", type=float, default=4.0, help="seconds per strategy run")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    asyncio.run(
        main(args.transport, args.fast, args.concurrency, args.rate, args.seconds, args.rounds)
    )
