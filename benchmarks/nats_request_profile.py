"""``python -m benchmarks.nats_request_profile``: where a NATS request round trip's CPU goes.

Sequential round trips, requester and responder in this one process (as section 2
of :mod:`benchmarks.nats_compare`): seawall ``ctx.request`` to a service with
``requests="direct"`` (core NATS request/reply), beside nats-py ``request`` to a
subscription answering with ``respond`` (bare, and with seawall's headers).

* CPU per round trip: ``time.process_time`` around the timed loop, no profiler
  (median of ``--rounds`` rounds, the variants interleaved in each round).
* Shares by layer: one more loop under cProfile; each function's own time
  (``tottime``) goes to the layer of its file, a C function's own time to the
  layer of its callers (split as they called it), socket and epoll calls to
  their own layer. The shares are applied to the unprofiled CPU.
* Python function calls per round trip (C functions counted apart).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import gc
import pstats
import statistics
import time
import uuid
from collections import defaultdict
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
import nats

from . import workloads
from .nats_compare import (
    URL,
    _cloudevents_headers,
    decode_result,
    encode,
    probe_requester,
    responder,
)
from .workloads import PROBE, ProbeResult

LAYERS = (
    "nats-py client",
    "asyncio loop",
    "socket/epoll calls",
    "timers/deadlines",
    "seawall NATS transport",
    "envelope/payload codec",
    "runtime (request, replies)",
    "dispatcher (worker, handler)",
    "registry/other",
)

_TIMER_FUNCS = {"call_later", "call_at", "wait_for", "_release_waiter", "_cancel_and_wait"}
_HANDLE_FUNCS = {"cancel", "__lt__", "__eq__", "when", "_timer_handle_cancelled"}
_IO_FUNCS = ("_socket.socket", "select.epoll", "'send'", "'recv'", "'recv_into'", "'sendmsg'")

Key = tuple[str, int, str]
RoundTrip = Callable[[int], Awaitable[None]]


def layer_of(key: Key) -> str:
    """The layer of a Python function, by its file (and name, for asyncio's timers)."""
    path, _, name = key
    if "/seawall/transports/nats/" in path:
        return "seawall NATS transport"
    if "/seawall/_messages/" in path or "/msgspec/" in path:
        return "envelope/payload codec"
    if "/seawall/_runtime/" in path:
        base = path.rsplit("/", 1)[-1]
        if base in {"context.py", "replies.py", "sends.py", "target.py"}:
            return "runtime (request, replies)"
        return "dispatcher (worker, handler)"
    if path.endswith(("/seawall/_clock.py", "asyncio/timeouts.py")):
        return "timers/deadlines"
    if "/nats/" in path:
        return "nats-py client"
    if "/asyncio/" in path:
        if name in _TIMER_FUNCS or (path.endswith("events.py") and name in _HANDLE_FUNCS):
            return "timers/deadlines"
        return "asyncio loop"
    if path.endswith("/heapq.py"):
        return "timers/deadlines"
    return "registry/other"


def builtin_layer(key: Key) -> str | None:
    """The layer of a C function when it has one of its own, else None (its callers')."""
    name = key[2]
    if any(token in name for token in _IO_FUNCS):
        return "socket/epoll calls"
    if "heappush" in name or "heappop" in name:
        return "timers/deadlines"
    if "msgspec" in name or "json" in name:
        return "envelope/payload codec"
    return None


def attribute(stats: pstats.Stats) -> tuple[dict[str, float], dict[str, float], int, int]:
    """Own time per layer and per file (profiled seconds), Python calls and C calls."""
    raw: dict[Key, Any] = stats.stats  # type: ignore[attr-defined]
    layers: dict[str, float] = defaultdict(float)
    files: dict[str, float] = defaultdict(float)
    py_calls = c_calls = 0

    def caller_layer(key: Key, depth: int = 0) -> dict[str, float]:
        """Weights of the layers calling ``key`` (C callers resolved through their own)."""
        callers = raw[key][4]
        total = sum(entry[3] for entry in callers.values()) or 1.0
        weights: dict[str, float] = defaultdict(float)
        for caller, entry in callers.items():
            share = entry[3] / total if total else 1 / len(callers)
            if caller[0] == "~" and depth < 3 and caller in raw:
                own = builtin_layer(caller)
                if own:
                    weights[own] += share
                else:
                    for name, w in caller_layer(caller, depth + 1).items():
                        weights[name] += share * w
            else:
                weights[layer_of(caller)] += share
        return weights or {"registry/other": 1.0}

    for key, (_, ncalls, tottime, _, _) in raw.items():
        if key[0] == "~":
            c_calls += ncalls
            own = builtin_layer(key)
            if own:
                layers[own] += tottime
            else:
                for name, weight in caller_layer(key).items():
                    layers[name] += tottime * weight
        else:
            py_calls += ncalls
            layers[layer_of(key)] += tottime
            files["/".join(key[0].split("/")[-2:])] += tottime
    return layers, files, py_calls, c_calls


# -- the variants: set up, run a callable per round trip, tear down --------------------


@contextlib.asynccontextmanager
async def nats_py(cloudevents: bool) -> Any:
    client = await nats.connect(URL)
    subject = f"bench.prof.{uuid.uuid4().hex[:8]}"
    await client.subscribe(subject, cb=responder(client, cloudevents))

    async def once(seq: int) -> None:
        body = encode(msgspec.structs.replace(PROBE, seq=seq))
        headers = (
            _cloudevents_headers("command", "bench.Probe", "bench-client") if cloudevents else None
        )
        answered = await client.request(subject, body, timeout=2.0, headers=headers)
        if decode_result(answered.data).seq != seq:
            raise AssertionError("wrong reply")

    try:
        yield once
    finally:
        await client.close()


@contextlib.asynccontextmanager
async def seawall_direct() -> Any:
    async with probe_requester(direct=True) as ctx:

        async def once(seq: int) -> None:
            request = msgspec.structs.replace(PROBE, seq=seq)
            reply = await ctx.request(workloads.SERVICE, request, returns=ProbeResult)
            if reply.seq != seq:
                raise AssertionError("wrong reply")

        yield once


VARIANTS: dict[str, Callable[[], Any]] = {
    "nats-py": lambda: nats_py(False),
    "nats-py+headers": lambda: nats_py(True),
    "seawall direct": seawall_direct,
}


async def measure(name: str, count: int, profiler: cProfile.Profile | None) -> tuple[float, float]:
    """CPU and wall seconds per round trip of ``count`` round trips (after 200 unmeasured)."""
    async with VARIANTS[name]() as once:
        for seq in range(200):
            await once(seq)
        gc.collect()
        cpu, wall = time.process_time(), time.perf_counter()
        if profiler:
            profiler.enable()
        for seq in range(count):
            await once(seq)
        if profiler:
            profiler.disable()
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    return cpu / count, wall / count


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=3000, help="round trips per loop")
    parser.add_argument("--rounds", type=int, default=5, help="unprofiled rounds (median)")
    parser.add_argument("--top", type=int, default=0, help="also print the N costliest functions")
    args = parser.parse_args()
    cpu: dict[str, list[float]] = defaultdict(list)
    wall: dict[str, list[float]] = defaultdict(list)
    for _ in range(args.rounds):
        for name in VARIANTS:
            c, w = await measure(name, args.count, None)
            cpu[name].append(c)
            wall[name].append(w)
    med = {name: statistics.median(values) * 1e6 for name, values in cpu.items()}
    print(f"{args.count} sequential round trips x {args.rounds} rounds, medians per round trip")
    print(f"{'variant':<18}{'CPU us':>9}{'wall us':>9}{'CPU/nats-py':>13}")
    for name in VARIANTS:
        print(
            f"{name:<18}{med[name]:>9.1f}{statistics.median(wall[name]) * 1e6:>9.1f}"
            f"{med[name] / med['nats-py']:>12.2f}x"
        )
    shares: dict[str, dict[str, float]] = {}
    calls: dict[str, tuple[float, float, float]] = {}
    seawall_files: dict[str, float] = {}
    for name in VARIANTS:
        profiler = cProfile.Profile()
        await measure(name, args.count, profiler)
        stats = pstats.Stats(profiler)
        layers, files, py_calls, c_calls = attribute(stats)
        total = sum(layers.values())
        shares[name] = {layer: layers.get(layer, 0.0) / total for layer in LAYERS}
        turns = sum(
            entry[1]
            for key, entry in stats.stats.items()  # type: ignore[attr-defined]
            if key[2] == "_run_once"
        )
        calls[name] = (py_calls / args.count, c_calls / args.count, turns / args.count)
        if name == "seawall direct":
            seawall_files = {f: t / total * med[name] for f, t in files.items()}
        if args.top:
            print(f"\n-- {name}: top {args.top} by own time (profiled)")
            stats.sort_stats("tottime").print_stats(args.top)
    names = list(VARIANTS)
    print("\nCPU us per round trip by layer (share of the unprofiled CPU)")
    print(f"{'layer':<30}" + "".join(f"{n:>22}" for n in names) + f"{'seawall - nats-py':>19}")
    for layer in LAYERS:
        cells = "".join(
            f"{shares[n][layer] * med[n]:>13.1f} ({shares[n][layer]:>4.0%})" for n in names
        )
        diff = shares["seawall direct"][layer] * med["seawall direct"]
        diff -= shares["nats-py"][layer] * med["nats-py"]
        print(f"{layer:<30}{cells}{diff:>+19.1f}")
    total_cells = "".join(f"{med[n]:>13.1f} (100%)" for n in names)
    print(f"{'total':<30}{total_cells}{med['seawall direct'] - med['nats-py']:>+19.1f}")
    print(f"{'Python calls / round trip':<30}" + "".join(f"{calls[n][0]:>22.0f}" for n in names))
    print(f"{'C calls / round trip':<30}" + "".join(f"{calls[n][1]:>22.0f}" for n in names))
    print(f"{'loop turns / round trip':<30}" + "".join(f"{calls[n][2]:>22.1f}" for n in names))
    print("\nseawall direct, own CPU us per round trip by file (Python code only, top 14)")
    for path, micros in sorted(seawall_files.items(), key=lambda item: -item[1])[:14]:
        print(f"  {path:<40}{micros:>7.1f}")


if __name__ == "__main__":
    asyncio.run(main())
