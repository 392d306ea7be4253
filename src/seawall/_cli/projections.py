"""``seawall projections status|rebuild``: look after a service's CQRS projections.

The store comes from ``--store URL`` (or ``SEAWALL_ES_STORE``), e.g.
``sqlite:///var/lib/bank/events.db`` or ``postgresql://app@db/bank``. ``status``
lists every checkpoint in the store with the head of the log and the lag.
``rebuild NAME`` needs the projection's code: ``--app module:attr`` names a
:class:`~seawall.es.ProjectionSet` (or a function returning one), which holds
the projections and the codec for their events; a rich progress bar shows the
rate and the time left.
"""

from __future__ import annotations

import asyncio
import importlib
import sys
import time
from typing import Any

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from .._exceptions import ConfigurationError, SeawallError
from ..es import ProjectionRunner
from ..es._open import ProjectionSet, open_store

__all__ = ["load_projections", "projections"]

_STORE = click.option(
    "--store",
    envvar="SEAWALL_ES_STORE",
    required=True,
    help="Event store URL: sqlite:///path.db or postgresql://user@host/db[?prefix=p_].",
)


def load_projections(target: str) -> ProjectionSet:
    """Import ``module:attr`` and return the ProjectionSet it names."""
    module_name, _, attr = target.partition(":")
    if not module_name or not attr:
        raise ConfigurationError(
            f"--app takes MODULE:ATTR (e.g. 'bank.app:projections'), got {target!r}"
        )
    sys.path.insert(0, ".")
    try:
        obj: Any = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise ConfigurationError(f"cannot load {target}: {exc}") from exc
    if callable(obj) and not isinstance(obj, ProjectionSet):
        obj = obj()
    if not isinstance(obj, ProjectionSet):
        raise ConfigurationError(f"{target} is a {type(obj).__name__}, not a ProjectionSet")
    return obj


@click.group()
def projections() -> None:
    """Inspect and rebuild CQRS projections."""


@projections.command()
@_STORE
def status(store: str) -> None:
    """Every projection's checkpoint, the head of the log, and the lag."""
    _run(_status(store))


async def _status(url: str) -> None:
    store = await open_store(url)
    try:
        head, checkpoints = await store.head(), await store.checkpoints()
    finally:
        await store.close()
    table = Table("projection", "checkpoint", "head", "lag", title=f"projections in {url}")
    for name, position in checkpoints.items():
        table.add_row(name, str(position), str(head), str(max(0, head - position)))
    if not checkpoints:
        table.add_row("(none yet)", "-", str(head), "-")
    Console().print(table)


@projections.command()
@click.argument("name")
@_STORE
@click.option("--app", "app", required=True, help="MODULE:ATTR of the service's ProjectionSet.")
@click.option("--from-position", type=int, default=0, show_default=True)
@click.option("--from-time", type=float, default=None, help="Epoch seconds; overrides position.")
def rebuild(name: str, store: str, app: str, from_position: int, from_time: float | None) -> None:
    """Start projection NAME over and catch it up, with a progress bar."""
    _run(_rebuild(name, store, load_projections(app), from_position, from_time))


async def _rebuild(
    name: str, url: str, found: ProjectionSet, from_position: int, from_time: float | None
) -> None:
    projection = found.find(name)
    store = await open_store(url)
    columns = (
        TextColumn(f"rebuilding {name}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]} events/s"),
        TextColumn("ETA"),
        TimeRemainingColumn(),
    )
    started = time.monotonic()
    try:
        with Progress(*columns, console=Console(stderr=True)) as bar:
            task = bar.add_task(name, total=None, rate="-")

            def progress(done: int, total: int) -> None:
                rate = done / max(time.monotonic() - started, 1e-9)
                bar.update(task, completed=done, total=total, rate=f"{rate:,.0f}")

            runner = ProjectionRunner(store, found.codec, projection)
            done = await runner.rebuild(
                from_position=from_position, from_time=from_time, progress=progress
            )
        lag = (await runner.status()).lag
    finally:
        await store.close()
    seconds = time.monotonic() - started
    click.echo(f"rebuilt {name}: {done} events in {seconds:.1f} s; lag now {lag}")


def _run(coro: Any) -> None:
    try:
        asyncio.run(coro)
    except SeawallError as exc:
        raise click.ClickException(str(exc)) from exc
