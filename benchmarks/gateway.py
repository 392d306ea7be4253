"""``python -m benchmarks.gateway``: a request through the gateway beside a bare Starlette endpoint.

Issue 17's figure: gateway request p50 / p99 and throughput, beside a bare
Starlette endpoint doing the same request/reply, in one run (target: p50 at
most 1.3 x the bare endpoint's).

One server process runs a system (the ``calc`` service over ``memory://``) and
two uvicorn servers in its event loop, on loopback ports:

- ``gateway``: :class:`seawall.gateway.Gateway` with ``GET /add/{a}?b=`` routed as
  a request to ``calc`` (validation into the payload, deadline, error table,
  correlation, the server span with OpenTelemetry's API as installed);
- ``bare``: a Starlette route that reads the same two numbers by hand, makes
  the same ``ctx.request`` and encodes the reply, nothing else.

A load process (httpx, keep-alive, ``--concurrency`` requests in flight) drives
one of them for ``--seconds`` per round, after a warm-up; rounds alternate
between the two, and the table gives the medians over rounds of each round's
p50, p99 and requests per second, with the gateway's ratio to bare, and the
server process's CPU time per request (read from the server before and after
each round), which other load on a shared machine disturbs less than latency.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import ClassVar

from seawall import Command, Document, Service

ROOT = Path(__file__).resolve().parent.parent
TARGET = 1.3


class Add(Command, frozen=True):
    type_name: ClassVar[str] = "bench.Add"
    a: int
    b: int = 0


class Sum(Document, frozen=True):
    type_name: ClassVar[str] = "bench.Sum"
    total: int


def _calc() -> Service:
    calc = Service("calc")

    @calc.command
    async def add(cmd: Add) -> Sum:
        return Sum(total=cmd.a + cmd.b)

    return calc


async def _serve() -> None:
    import msgspec
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

    from seawall import System
    from seawall.gateway import Gateway, serving

    system = System(_calc(), transport="memory://")
    gateway = Gateway(title="bench")
    gateway.request("GET", "/add/{a}", channel="calc", payload=Add, returns=Sum)

    async def bare(request: Request) -> Response:
        ctx = system.context("bare")
        payload = Add(a=int(request.path_params["a"]), b=int(request.query_params.get("b", 0)))
        reply = await ctx.request("calc", payload, returns=Sum, timeout=10.0)
        return Response(msgspec.json.encode(reply), media_type="application/json")

    async def cpu(request: Request) -> Response:
        return Response(repr(time.process_time()))  # the server process's CPU seconds so far

    plain = Starlette(
        routes=[Route("/add/{a}", bare, methods=["GET"]), Route("/cpu", cpu, methods=["GET"])]
    )
    async with system, serving(gateway.app(system)) as api, serving(plain) as direct:
        print(json.dumps({"gateway": api, "bare": direct}), flush=True)
        await asyncio.to_thread(sys.stdin.read)  # until the parent closes our stdin


async def _load(url: str, seconds: float, warmup: float, concurrency: int) -> dict[str, float]:
    import httpx

    latencies: list[float] = []
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=30.0) as client:

        async def worker(until: float, record: bool) -> None:
            n = 0
            while (now := time.perf_counter()) < until:
                n += 1
                response = await client.get(f"/add/{n}", params={"b": 1})
                if response.status_code != 200 or response.json()["total"] != n + 1:
                    raise RuntimeError(f"{url}: HTTP {response.status_code}: {response.text}")
                if record:
                    latencies.append(time.perf_counter() - now)

        async with asyncio.TaskGroup() as tasks:
            for _ in range(concurrency):
                tasks.create_task(worker(time.perf_counter() + warmup, False))
        started = time.perf_counter()
        async with asyncio.TaskGroup() as tasks:
            for _ in range(concurrency):
                tasks.create_task(worker(started + seconds, True))
        took = time.perf_counter() - started
    latencies.sort()
    return {
        "p50": latencies[len(latencies) // 2] * 1000,
        "p99": latencies[int(len(latencies) * 0.99)] * 1000,
        "rps": len(latencies) / took,
    }


def _cpu(bare: str) -> float:
    import httpx

    return float(httpx.get(f"{bare}/cpu", timeout=30).text)


def _round(url: str, bare: str, args: argparse.Namespace) -> dict[str, float]:
    cpu = _cpu(bare)
    done = subprocess.run(
        [
            *(sys.executable, "-m", "benchmarks.gateway", "--load", url),
            *("--seconds", str(args.seconds), "--concurrency", str(args.concurrency)),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=args.seconds * 4 + 60,
        check=False,
    )
    if done.returncode != 0:
        raise SystemExit(f"load on {url} failed:\n{done.stderr[-2000:]}")
    result: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    # the server's CPU per request (warm-up included in both the time and the count)
    requests = result["rps"] * args.seconds * (1 + 0.5 / args.seconds)
    result["cpu_ms"] = (_cpu(bare) - cpu) * 1000 / requests
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.gateway", description=__doc__)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--load", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        asyncio.run(_serve())
        return 0
    if args.load:
        figures = asyncio.run(_load(args.load, args.seconds, 0.5, args.concurrency))
        print(json.dumps(figures))
        return 0
    server = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.gateway", "--serve"],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        urls = json.loads(server.stdout.readline())
        samples: dict[str, list[dict[str, float]]] = {"gateway": [], "bare": []}
        for n in range(args.rounds):
            order = ("bare", "gateway") if n % 2 == 0 else ("gateway", "bare")
            for name in order:
                samples[name].append(_round(urls[name], urls["bare"], args))
    finally:
        assert server.stdin is not None
        server.stdin.close()
        server.wait(timeout=30)
    report(samples, args)
    return 0


def report(samples: dict[str, list[dict[str, float]]], args: argparse.Namespace) -> None:
    def median(name: str, key: str) -> float:
        return statistics.median(s[key] for s in samples[name])

    print(
        f"GET /add/{{a}}?b= → request/reply to one service over memory://, uvicorn on loopback, "
        f"{args.concurrency} requests in flight from another process (httpx, keep-alive); "
        f"medians of {args.rounds} rounds of {args.seconds:g} s, alternating\n"
    )
    print("| endpoint | p50 ms | p99 ms | requests/s | server CPU ms/request |")
    print("|---|---:|---:|---:|---:|")
    for name, label in (("bare", "bare Starlette endpoint"), ("gateway", "seawall gateway")):
        p50, p99, rps = median(name, "p50"), median(name, "p99"), median(name, "rps")
        print(f"| {label} | {p50:.2f} | {p99:.2f} | {rps:,.0f} | {median(name, 'cpu_ms'):.3f} |")
    ratio = median("gateway", "p50") / median("bare", "p50")
    verdict = "met" if ratio <= TARGET else "NOT met"
    pairs = zip(samples["gateway"], samples["bare"], strict=True)
    spread = [round(g["p50"] / b["p50"], 2) for g, b in pairs]
    cpu = median("gateway", "cpu_ms") / median("bare", "cpu_ms")
    print(
        f"\ngateway p50 / bare p50 = {ratio:.2f} (target ≤ {TARGET}: {verdict}); "
        f"per round: {spread}; server CPU per request, gateway / bare = {cpu:.2f} "
        "(less disturbed by other load on the machine than wall-clock latency)"
    )


if __name__ == "__main__":
    raise SystemExit(main())
