"""``python -m examples.ftgo`` (``make demo``): run the FTGO system, print the summary.

``SEAWALL_DEMO_ORDERS`` sets the number of orders (2,000 by default) and
``SEAWALL_DEMO_TRANSPORT`` (or ``--transport``) a NATS URL to run on instead of
the embedded broker. Exits 1 when an invariant does not hold.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

from seawall._up.config import EMBEDDED

from .audit import Summary
from .demo import CONCURRENCY, run
from .report import report


@contextlib.contextmanager
def progress(total: int, console: Console) -> Iterator[Callable[[], None]]:
    """A callback per finished order: a live bar on a terminal, else a line per 10 %."""
    if console.is_terminal:
        columns = (*Progress.get_default_columns()[:1], BarColumn(), MofNCompleteColumn())
        with Progress(*columns, TimeElapsedColumn(), console=console) as bar:
            task = bar.add_task("orders", total=total)
            yield lambda: bar.advance(task)
        return
    done, step = 0, max(1, total // 10)

    def tick() -> None:
        nonlocal done
        done += 1
        if done % step == 0 or done == total:
            console.print(f"  {done}/{total} orders done")

    yield tick


async def main(
    orders: int, transport: str, concurrency: int, console: Console, state: Path | None = None
) -> Summary:
    where = "the embedded broker" if transport == EMBEDDED else transport
    console.print(
        f"seawall demo: FTGO, 7 services in 9 processes on {where}; {orders:,} orders, "
        f"{concurrency} at a time; a Kitchen process will be killed"
    )
    with progress(orders, console) as tick:
        summary = await run(
            orders, concurrency=concurrency, transport=transport, state=state, tick=tick
        )
    report(summary, console)
    return summary


def cli(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m examples.ftgo", description=__doc__)
    parser.add_argument("--orders", type=int, default=None)
    parser.add_argument("--concurrency", type=int, default=CONCURRENCY)
    parser.add_argument(
        "--transport",
        default=os.environ.get("SEAWALL_DEMO_TRANSPORT", EMBEDDED),
        help='"embedded" (default) or a NATS URL, e.g. nats://127.0.0.1:4222',
    )
    parser.add_argument(
        "--state", type=Path, default=None, help="keep the run's files (logs, data) here"
    )
    args = parser.parse_args(argv)
    text = os.environ.get("SEAWALL_DEMO_ORDERS", "2000")
    if args.orders is None and (not text.isdigit() or int(text) < 1):
        parser.error(f"SEAWALL_DEMO_ORDERS must be a positive whole number, got {text!r}")
    orders = args.orders if args.orders is not None else int(text)
    console = Console()
    logging.basicConfig(level=logging.ERROR, stream=sys.stderr)
    summary = asyncio.run(main(orders, args.transport, args.concurrency, console, args.state))
    if summary.problems():
        console.print("[bold red]demo failed[/]: the invariants above do not hold")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(cli())
