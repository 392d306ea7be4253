"""``seawall sagas status``: the sagas of a saga store, running, stuck and finished.

The store is an event store URL (``--store``, or ``SEAWALL_SAGA_STORE``):
``sqlite:///var/lib/order/sagas.db`` or ``postgresql://app@db/order``. The
command folds every saga stream (:func:`seawall.sagas.status`) and prints the
counts per state, then the unfinished sagas (stuck ones first) and, with
``--all``, the finished ones too. ``--json`` prints the same as one JSON
object for machines. A saga is *stuck* when it has made no progress for
``--stuck-after`` seconds, or is past its timeout without having compensated.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from dataclasses import asdict
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from .._exceptions import SeawallError
from ..es._open import open_store
from ..sagas import STUCK_AFTER, SagaView
from ..sagas import status as saga_status

__all__ = ["sagas"]

STATES = ("running", "compensating", "stuck", "completed", "rejected")


@click.group()
def sagas() -> None:
    """Inspect orchestration sagas in a saga store."""


@sagas.command()
@click.option(
    "--store",
    envvar="SEAWALL_SAGA_STORE",
    required=True,
    help="Saga store (event store) URL: sqlite:///path.db or postgresql://user@host/db.",
)
@click.option(
    "--stuck-after",
    type=click.FloatRange(min=0.0),
    default=STUCK_AFTER,
    show_default=True,
    help="Seconds without progress after which an unfinished saga counts as stuck.",
)
@click.option("--all", "show_all", is_flag=True, help="List finished sagas too.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of tables.")
def status(store: str, stuck_after: float, show_all: bool, as_json: bool) -> None:
    """Counts per state, then the running and stuck sagas (and finished ones with --all)."""
    _exists(store)
    try:
        views = asyncio.run(_views(store, stuck_after))
    except SeawallError as exc:
        raise click.ClickException(str(exc)) from exc
    counts = Counter[str](v.state for v in views)
    if as_json:
        shown = views if show_all else [v for v in views if not v.status.endswith("ed")]
        body = {
            "store": store,
            "counts": {state: counts.get(state, 0) for state in STATES},
            "sagas": [{**asdict(v), "state": v.state} for v in shown],
        }
        click.echo(json.dumps(body, indent=2))
        return
    _print(store, views, counts, show_all)


def _exists(url: str) -> None:
    """Refuse a SQLite store that is not there (opening it would create an empty one)."""
    scheme, _, rest = url.partition("://")
    if scheme == "sqlite" and rest and not Path(rest).exists():
        raise click.ClickException(
            f"no saga store at {rest!r} (from --store {url}); give the path of the service's "
            "saga database, e.g. sqlite:///var/lib/order/sagas.db"
        )


async def _views(url: str, stuck_after: float) -> list[SagaView]:
    store = await open_store(url)
    try:
        return await saga_status(store, stuck_after=stuck_after)
    finally:
        await store.close()


def _print(url: str, views: list[SagaView], counts: Counter[str], show_all: bool) -> None:
    console = Console()
    summary = Table(*STATES, title=f"sagas in {url}", title_justify="left")
    summary.add_row(*(str(counts.get(state, 0)) for state in STATES))
    console.print(summary)
    shown = [v for v in views if show_all or not v.status.endswith("ed")]
    shown.sort(key=lambda v: (not v.stuck, v.started_at))
    if not shown:
        return
    now = time.time()
    table = Table("saga", "id", "state", "step", "attempt", "idle s", "reason", "compensated")
    for v in shown:
        table.add_row(
            v.saga,
            v.id,
            v.state,
            v.step,
            str(v.attempt),
            f"{max(0.0, now - v.progressed_at):.0f}",
            v.reason,
            ", ".join(v.compensated),
        )
    console.print(table)
