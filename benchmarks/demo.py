"""``python -m benchmarks.demo``: the FTGO demo end to end, on the embedded broker and on NATS.

Each round runs the whole demo (:func:`examples.ftgo.demo.run`): ``seawall up``
starts the broker (embedded only) and the nine service processes, the client
places ``--orders`` orders ``--concurrency`` at a time while a Kitchen process
is killed and a malformed message is dead-lettered, and the run is audited.
Rounds alternate between the transports, so load on the shared machine falls
on both alike. Printed for each: orders per second (orders / seconds from the
first order to the last outcome) and p50 / p99 order latency, medians over
the rounds, side by side with the ratio NATS / embedded. A round whose audit
fails makes the module exit non-zero. NATS is ``SEAWALL_BENCH_NATS_URL`` (default
``nats://127.0.0.1:4222``); each run deletes its streams.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import statistics
import sys

from examples.ftgo.audit import Summary
from examples.ftgo.demo import run

from seawall._up.config import EMBEDDED

NATS = os.environ.get("SEAWALL_BENCH_NATS_URL", "nats://127.0.0.1:4222")


def figures(runs: list[Summary]) -> tuple[float, float, float]:
    """Median orders/s, p50 and p99 latency (ms) over ``runs``."""
    return (
        statistics.median(r.orders_per_second for r in runs),
        statistics.median(r.latency(0.5) for r in runs) * 1e3,
        statistics.median(r.latency(0.99) for r in runs) * 1e3,
    )


async def main(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.ERROR)  # the supervisor's restart notices are expected
    transports = {"embedded broker (seawall up)": EMBEDDED, f"NATS JetStream ({NATS})": NATS}
    results: dict[str, list[Summary]] = {name: [] for name in transports}
    failures = []
    print(
        f"FTGO demo: {args.orders} orders, {args.concurrency} in flight, 9 service processes, "
        f"one Kitchen SIGKILLed per run; {args.rounds} rounds per transport, alternating"
    )
    for round_ in range(1, args.rounds + 1):
        for name, url in transports.items():
            summary = await run(args.orders, concurrency=args.concurrency, transport=url)
            results[name].append(summary)
            problems = summary.problems()
            if problems:
                failures.append(f"{name} round {round_}: {problems}")
            print(
                f"  round {round_} {name}: {summary.orders_per_second:,.0f} orders/s, "
                f"p99 {summary.latency(0.99) * 1e3:,.0f} ms"
                + ("" if not problems else "  AUDIT FAILED"),
                flush=True,
            )
    (e_rate, e_p50, e_p99), (n_rate, n_p50, n_p99) = (figures(r) for r in results.values())
    width = max(map(len, results))
    print(f"{'':{width}}  {'orders/s':>9}  {'p50 ms':>7}  {'p99 ms':>7}  (medians)")
    for name, (rate, p50, p99) in zip(
        results, ((e_rate, e_p50, e_p99), (n_rate, n_p50, n_p99)), strict=True
    ):
        print(f"{name:{width}}  {rate:9,.0f}  {p50:7,.0f}  {p99:7,.0f}")
    print(
        f"ratio NATS / embedded: orders/s {n_rate / e_rate:.2f}x, p99 latency {n_p99 / e_p99:.2f}x"
    )
    for failure in failures:
        print(f"FAILED {failure}", file=sys.stderr)
    return 1 if failures else 0


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.demo", description=__doc__)
    parser.add_argument("--orders", type=int, default=1000, help="orders per run")
    parser.add_argument("--concurrency", type=int, default=50, help="orders in flight")
    parser.add_argument("--rounds", type=int, default=3, help="runs per transport")
    return parser.parse_args()


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main(parse())))
