"""``python -m benchmarks``: run every workload, print the table, write the results."""

from __future__ import annotations

import argparse
import logging
import shlex
import sys
from dataclasses import replace
from pathlib import Path

from seawall import Service

from .report import Report, environment, now
from .runner import Benchmark, Target, measure, summarize
from .workloads import (
    PAYLOAD,
    PAYLOAD_BYTES,
    Settings,
    envelope_only,
    hop_floor,
    publish_to_handler,
    queue_anchor,
    request_reply,
)

RESULTS = Path(__file__).resolve().parent / "results"


def benchmarks(scale: float, time_limit: float, window: int, concurrency: int) -> list[Benchmark]:
    """The benchmarks, with counts multiplied by ``scale``."""
    base = Settings(count=0, time_limit=time_limit, window=window, concurrency=concurrency)

    def settings(count: int) -> Settings:
        return replace(base, count=max(1, round(count * scale)))

    return [
        Benchmark(
            key="anchor",
            label="(a) asyncio.Queue anchor",
            unit="objects/s",
            workload=queue_anchor,
            settings=settings(200_000),
        ),
        Benchmark(
            key="publish",
            label="(b) publish → handler",
            unit="msgs/s",
            workload=publish_to_handler,
            settings=settings(100_000),
            target=Target(min_ratio=0.2, min_rate=200_000),
        ),
        Benchmark(
            key="request",
            label="(c) request/reply, sequential",
            unit="round trips/s",
            workload=request_reply,
            settings=settings(20_000),
            target=Target(min_rate=40_000),
        ),
        Benchmark(
            key="envelope",
            label="(d) envelope only, no transport",
            unit="msgs/s",
            workload=envelope_only,
            settings=settings(100_000),
        ),
        Benchmark(
            key="hops",
            label="(e) 4 task hops only, no seawall",
            unit="round trips/s",
            workload=hop_floor,
            settings=settings(100_000),
        ),
    ]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="Run the seawall benchmarks, print their table and write the results.",
    )
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per benchmark (5)")
    parser.add_argument(
        "--scale", type=float, default=1.0, help="multiply every message count (1.0)"
    )
    parser.add_argument(
        "--time-limit", type=float, default=5.0, help="seconds after which a run stops (5)"
    )
    parser.add_argument(
        "--window", type=int, default=1024, help="queue bound / publisher in-flight window"
    )
    parser.add_argument("--concurrency", type=int, default=64, help="handlers at once (64)")
    parser.add_argument(
        "--only",
        choices=["publish", "request"],
        action="append",
        help="run only this benchmark next to the anchor (repeatable)",
    )
    parser.add_argument(
        "--profile",
        choices=["anchor", "publish", "request"],
        help="run this workload once under pyinstrument instead of benchmarking",
    )
    parser.add_argument("--flat", action="store_true", help="with --profile: a flat self-time list")
    parser.add_argument("--no-save", action="store_true", help="do not write benchmarks/results/")
    parser.add_argument(
        "--check", action="store_true", help="exit with status 1 when a target is missed"
    )
    return parser


def _config(args: argparse.Namespace, suite: list[Benchmark]) -> dict[str, object]:
    return {
        "repeats": args.repeats,
        "time_limit_s": args.time_limit,
        "counts": {bench.key: bench.settings.count for bench in suite},
        "payload": f"{type(PAYLOAD).__name__} (msgspec Struct), {PAYLOAD_BYTES} bytes as JSON",
        "payload_bytes": PAYLOAD_BYTES,
        "window": args.window,
        "handler_concurrency": args.concurrency,
        "prefetch": Service("bench", concurrency=args.concurrency).prefetch,
        "transport": "MemoryTransport() (serialize=True)",
        "codec": "JSON",
        "warmup": (
            "one untimed run at count/10 per benchmark; "
            f"{suite[0].settings.warmup} untimed messages at the start of each seawall run"
        ),
    }


def _shown(path: Path) -> Path:
    cwd = Path.cwd()
    return path.relative_to(cwd) if path.is_relative_to(cwd) else path


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    suite = benchmarks(args.scale, args.time_limit, args.window, args.concurrency)
    if args.profile:
        from .profiling import profile

        bench = next(b for b in suite if b.key == args.profile)
        print(profile(bench.workload, bench.settings, flat=args.flat))
        return 0
    if args.only:
        suite = [bench for bench in suite if bench.key == "anchor" or bench.key in args.only]

    command = shlex.join(["python", "-m", "benchmarks", *(sys.argv[1:] if argv is None else argv)])
    started = now()
    samples = measure(suite, args.repeats, progress=lambda line: print(line, flush=True))
    report = Report(
        results=summarize(suite, samples, anchor="anchor"),
        config=_config(args, suite),
        environment=environment(),
        command=command,
        started=started,
    )
    env = report.environment
    print(f"\n{env['cpu']}, {env['cores']} cores; {env['python']}; msgspec {env['msgspec']}")
    print(f"payload {PAYLOAD_BYTES} B; window {args.window}; concurrency {args.concurrency}")
    print(f"medians of {args.repeats} runs\n")
    print(report.table())
    if not args.no_save:
        for path in report.write(RESULTS):
            print(f"wrote {_shown(path)}")
    missed = any(result.passed is False for result in report.results)
    return 1 if args.check and missed else 0


if __name__ == "__main__":
    sys.exit(main())
