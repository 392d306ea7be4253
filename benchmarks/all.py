"""``make bench``: every benchmark of the project in one run, collected in ``RESULTS.md``.

Each benchmark module runs in its own child process, one after the other (the
machine has two cores: running them side by side would measure each other).
Every module prints its own figures beside the anchor it is measured against
in that same run, with ratios; this collector adds the conditions (machine,
Python, library and server versions) and writes everything, in order, to
``benchmarks/RESULTS.md`` and a dated copy in ``benchmarks/results/``. A module
that fails or is missing is reported as such in the file, and ``make bench``
then exits non-zero after the others ran.

``python -m benchmarks.all [--quick] [--only NAME ...]``
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from importlib.util import find_spec
from pathlib import Path

from .report import environment, now

ROOT = Path(__file__).resolve().parent
RESULTS_FILE = ROOT / "RESULTS.md"


@dataclass(frozen=True)
class Section:
    """One benchmark module and the figures of the issues it answers."""

    name: str
    title: str
    module: str
    args: tuple[str, ...] = ()
    quick: tuple[str, ...] = ()
    """Arguments for ``--quick`` runs (smaller counts)."""
    data_dir: bool = False
    """Whether the module takes ``--data DIR`` (a fresh temporary directory)."""


SECTIONS = (
    Section(
        "core",
        "Core runtime (issue 2): in-process figures beside asyncio.Queue",
        "benchmarks",
        ("--no-save",),
        ("--no-save", "--scale", "0.2", "--repeats", "3"),
    ),
    Section(
        "speed-in",
        "In-process speed (issue 14): memory:// and import seawall beside asyncio.Queue and "
        "nats-py, rates and callgrind instruction counts, same run",
        "benchmarks.instructions",
        ("--rounds", "3", "--scale", "0.5", "--imports", "11"),
        ("--rounds", "2", "--scale", "0.2", "--imports", "5"),
    ),
    Section(
        "layout",
        "In-process figures beside main before the layout change (issue 12), same run",
        "benchmarks.ab",
        quick=("--rounds", "3", "--scale", "0.2"),
    ),
    Section(
        "observe",
        "Tracing's cost on publish → handler (issue 15): OpenTelemetry not installed, and "
        "Tracing() with sampling off, beside the commit before it, same run",
        "benchmarks.observe",
        quick=("--rounds", "5", "--scale", "0.5"),
    ),
    Section(
        "log-models",
        "memory:// beside the engine's log model without a file (issue 12, item 6)",
        "benchmarks.log_models",
        quick=("--count", "20000", "--rounds", "3"),
    ),
    Section(
        "storage",
        "Embedded broker storage (issue 3, figure 1) beside raw SQLite and a plain file",
        "benchmarks.storage",
        quick=("--count", "50000"),
    ),
    Section(
        "wire",
        "Broker server (issue 3, figures 2 and 3) beside NATS core request/reply",
        "benchmarks.wire",
        quick=("--count", "20000", "--rounds", "500"),
        data_dir=True,
    ),
    Section(
        "sync",
        "Group commit (issue 14): `--sync batch` beside `--sync always` at 1, 4 and 64 "
        "publishers, same run",
        "benchmarks.group_commit",
        quick=("--slices", "4"),
    ),
    Section(
        "backlog",
        "Embedded broker memory with a large backlog (issue 3, figure 4)",
        "benchmarks.backlog",
        quick=("--count", "200000"),
    ),
    Section(
        "jetstream",
        "NATS JetStream transport beside raw nats-py (issue 4)",
        "benchmarks.jetstream",
    ),
    Section(
        "nats", "NATS: seawall beside nats-py and FastStream (issue 4)", "benchmarks.nats_compare"
    ),
    Section(
        "rabbitmq",
        "RabbitMQ: seawall beside aio-pika and FastStream (issue 4)",
        "benchmarks.rabbitmq_compare",
    ),
    Section(
        "redis",
        "Redis Streams: seawall beside redis-py and FastStream (issue 4)",
        "benchmarks.redis_compare",
        quick=("--count", "5000", "--rounds", "1"),
    ),
    Section(
        "routing",
        "Routing (issue 16): request p99 with one of three instances slowed 10x, "
        "least-outstanding and lowest-latency beside the shared channel, same run (NATS)",
        "benchmarks.routing",
        quick=("--rounds", "1", "--seconds", "2"),
    ),
    Section(
        "eventsourcing",
        "Event store and projections beside the eventsourcing library (issue 5)",
        "benchmarks.es_compare",
    ),
    Section(
        "outbox",
        "Outbox relays (issue 19): polling and log tailing on PostgreSQL beside a direct publish",
        "benchmarks.outbox",
        quick=("--count", "5000", "--rounds", "1"),
    ),
    Section(
        "resilience",
        "Circuit breaker + bulkhead per call (issue 16) beside a minimal breaker and aiobreaker",
        "benchmarks.resilience",
        ("--instructions",),
        ("--count", "50000", "--rounds", "5", "--requests", "2000"),
    ),
    Section(
        "failover",
        "Fail-over (issue 16): an owner of partitions killed, beside the 3 s lease before; "
        "one node of a 3-node NATS cluster killed",
        "benchmarks.failover",
        quick=("--rounds", "1"),
    ),
    Section(
        "gateway",
        "HTTP API gateway (issue 17): request p50/p99 and throughput beside a bare Starlette "
        "endpoint doing the same request/reply, same run",
        "benchmarks.gateway",
        quick=("--rounds", "2", "--seconds", "2"),
    ),
    Section(
        "demo",
        "The FTGO demo end to end on the embedded broker and on NATS (issue 6)",
        "benchmarks.demo",
        quick=("--orders", "300", "--rounds", "1"),
    ),
    Section(
        "console",
        "make demo's wall time with the web console attached and without (issue 18)",
        "benchmarks.console",
        quick=("--quick",),
    ),
)


def _version_of(package: str) -> str:
    try:
        return version(package)
    except PackageNotFoundError:
        return "not installed"


def _server_version(command: list[str]) -> str:
    if shutil.which(command[0]) is None:
        return "not installed"
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError) as exc:
        return f"unknown ({exc})"
    lines = (done.stdout or done.stderr).strip().splitlines()
    return lines[0] if lines else "unknown"


def conditions() -> str:
    """The machine, Python, libraries and servers the figures were measured with."""
    env = environment()
    packages = ("msgspec", "nats-py", "aio-pika", "redis", "asyncpg", "faststream", "eventsourcing")
    libraries = ", ".join(f"{name} {_version_of(name)}" for name in packages)
    servers = "; ".join(
        f"{name}: {_server_version(command)}"
        for name, command in (
            ("NATS", ["nats-server", "--version"]),
            ("Redis", ["redis-server", "--version"]),
            ("PostgreSQL", ["psql", "--version"]),
            ("RabbitMQ", ["dpkg-query", "-W", "-f=${Version}", "rabbitmq-server"]),
        )
    )
    return "\n".join(
        [
            f"- machine: {env['cpu']}, {env['cores']} cores ({env['usable_cores']} usable), "
            f"{env['platform']}",
            f"- Python: {env['python']}; seawall {env['seawall']} at commit {env['git_commit']}"
            + (" (src modified)" if env["src_modified"] else ""),
            f"- libraries: {libraries}",
            f"- servers: {servers}",
            "- payload and in-flight window: as each section states; every figure is a median of "
            "the repeats its section names, taken on a shared machine: compare ratios.",
        ]
    )


def run_section(section: Section, quick: bool) -> tuple[str, bool]:
    """Run one module; its printed figures (or why there are none) and whether it passed."""
    if find_spec(section.module) is None:
        return f"_not run: module `{section.module}` does not exist yet._\n", False
    args = list(section.quick if quick and section.quick else section.args)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="seawall-bench-") as tmp:
        if section.data_dir:
            args += ["--data", str(Path(tmp) / "data")]
        command = [sys.executable, "-m", section.module, *args]
        print(f"$ {' '.join(command)}", flush=True)
        done = subprocess.run(command, capture_output=True, text=True)
    seconds = time.monotonic() - started
    sys.stdout.write(done.stdout)
    shown = f"`python -m {section.module} {' '.join(args)}`".replace(" `", "`")
    body = [f"Command: {shown} ({seconds:.0f} s)", "", "```", done.stdout.rstrip(), "```", ""]
    if done.returncode != 0:
        tail = "\n".join(done.stderr.strip().splitlines()[-15:])
        body += [f"**Failed with exit status {done.returncode}:**", "", "```", tail, "```", ""]
    return "\n".join(body), done.returncode == 0


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.all", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smaller counts, for a quick look")
    parser.add_argument(
        "--only", action="append", choices=[s.name for s in SECTIONS], help="run only these"
    )
    parser.add_argument("--output", type=Path, default=RESULTS_FILE)
    args = parser.parse_args()
    chosen = [s for s in SECTIONS if not args.only or s.name in args.only]
    parts = [
        "# seawall benchmark results",
        "",
        f"Written by `make bench` (`python -m benchmarks.all`) on {now():%Y-%m-%d %H:%M} UTC"
        + (" with `--quick` (smaller counts)" if args.quick else "")
        + ".",
        "",
        "## Conditions",
        "",
        conditions(),
        "",
    ]
    failed = []
    for section in chosen:
        text, ok = run_section(section, args.quick)
        parts += [f"## {section.title}", "", text]
        if not ok:
            failed.append(section.name)
    text = "\n".join(parts)
    args.output.write_text(text)
    kept = ROOT / "results" / f"all-{now():%Y-%m-%d-%H%M%S}.md"  # the history of runs
    kept.write_text(text)
    print(f"wrote {args.output} and {kept}")
    if failed:
        print(f"benchmarks that did not run cleanly: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
