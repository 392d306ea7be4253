"""``seawall ps``: list the live service instances, as the registry channel says.

It listens to the registry channel (:mod:`seawall.discovery.channel`) for a
little longer than one heartbeat, replaying the last expiry period on
transports that can, and prints every instance heard within the expiry: an
instance killed without a word is gone from the list :data:`EXPIRY` seconds
after its last beat. Below the table, who calls whom: each service's
``sends_to`` (the targets it declares in ``depends_on`` and the channels it has
sent to), with the services that handle each channel. ``--json`` prints the
announcements themselves.

The broker comes from ``--transport URL`` (or ``SEAWALL_TRANSPORT``), else from
``seawall.toml`` (``--file``): its transport URL, or for the broker ``seawall
up`` starts, its ``listen`` address or the address of the running ``seawall up``
(:func:`seawall._up.control.running_broker`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from pathlib import Path

import click
import msgspec
from rich.console import Console
from rich.table import Table

from .._clock import SystemClock
from .._exceptions import ConfigurationError, SeawallError
from .._messages.ids import uuid7
from .._transport.options import redact
from .._transport.schemes import connect
from .._up.config import load_up_config
from .._up.control import running_broker
from ..discovery import HEARTBEAT, Announcement, RegistryReader, Roster

__all__ = ["broker_url", "calls_between", "listen", "ps"]

LISTEN = HEARTBEAT + 0.4
"""Seconds ``seawall ps`` listens: every live instance beats once in that time."""


@click.command()
@click.option(
    "--transport",
    envvar="SEAWALL_TRANSPORT",
    help="Transport URL of the broker (default: from seawall.toml).",
)
@click.option(
    "--file",
    "file",
    default="seawall.toml",
    show_default=True,
    help="The system's file, read when no --transport is given.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the announcements as JSON.")
@click.option("--listen", "seconds", default=LISTEN, show_default=True, help="Seconds to listen.")
def ps(transport: str | None, file: str, as_json: bool, seconds: float) -> None:
    """List the live service instances of the system."""
    try:
        url = transport or broker_url(Path(file))
        live = asyncio.run(listen(url, seconds))
    except SeawallError as exc:
        raise click.ClickException(str(exc)) from exc
    if as_json:
        rows = [msgspec.to_builtins(a) for a in live]
        click.echo(json.dumps(rows, indent=2))
        return
    if not live:
        click.echo(f"no live service instances on {redact(url)}")
        return
    console = Console()
    console.print(_table(live, time.time()))
    calls = calls_between(live)
    if calls:
        console.print("\nCALLS (sends to -> channel, and the services that handle it)")
        for line in calls:
            console.print(f"  {line}", markup=False, highlight=False)


def broker_url(file: Path) -> str:
    """The broker a system's file points at, for a client outside the system."""
    if not file.exists():
        raise ConfigurationError(
            f"no --transport given and no {file} here; pass --transport URL (or set "
            "SEAWALL_TRANSPORT), or run in the directory of the system's seawall.toml"
        )
    config = load_up_config(file)
    if not config.embedded:
        return config.transport
    if config.listen is not None:
        return f"seawall://{config.listen}"
    running = running_broker(config.state_dir)
    if running is None:
        raise ConfigurationError(
            f"{file} has seawall up start the broker, and no seawall up runs it now "
            f"(nothing in {config.state_dir}); start it, or pass --transport URL"
        )
    return running


async def listen(url: str, seconds: float) -> list[Announcement]:
    """The instances announced on ``url`` within the last expiry, after listening ``seconds``."""
    clock = SystemClock()
    transport = connect(url, clock=clock)
    roster = Roster()
    reader = RegistryReader(
        transport, clock, instance=f"ps-{uuid7()}", roster=roster, history=False, prune=False
    )
    try:
        task = asyncio.create_task(reader.run())
        await asyncio.wait({task}, timeout=seconds)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    finally:
        await transport.close()
    return [entry.announcement for entry in roster.live(clock.time())]


def _table(live: list[Announcement], now: float) -> Table:
    table = Table(box=None, header_style="bold")
    for column in ("SERVICE", "INSTANCE", "HOST/PID", "VERSIONS", "IN FLIGHT", "HANDLED/S"):
        table.add_column(column)
    table.add_column("P99")
    table.add_column("AGE")
    for a in live:
        versions = sorted({t for h in a.handles for t in h.types})
        table.add_row(
            a.service,
            a.instance[-12:],
            f"{a.host}/{a.pid}",
            ", ".join(versions) or "-",
            str(a.in_flight),
            f"{a.handled_per_s:.1f}",
            f"{a.handler_p99_ms:.1f} ms",
            _age(now - a.started_at) if a.started_at else "-",
        )
    return table


def calls_between(live: list[Announcement]) -> list[str]:
    """The dependency graph, one line per calling service: ``orders -> kitchen, payments
    (payments, refunds)``: each channel its instances send to, with the services that handle
    it when they are not just the channel's own name (a channel nobody live handles: alone)."""
    handled: dict[str, set[str]] = {}
    sends: dict[str, set[str]] = {}
    for a in live:
        for h in a.handles:
            handled.setdefault(h.channel, set()).add(a.service)
        sends.setdefault(a.service, set()).update(a.sends_to)
    lines = []
    for service, channels in sorted(sends.items()):
        if channels:
            targets = [_target(c, handled.get(c, set())) for c in sorted(channels)]
            lines.append(f"{service} -> {', '.join(targets)}")
    return lines


def _target(channel: str, handlers: set[str]) -> str:
    if not handlers or handlers == {channel}:
        return channel
    return f"{channel} ({', '.join(sorted(handlers))})"


def _age(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m"
    return f"{seconds / 3600:.1f}h"
