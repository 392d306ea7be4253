"""``seawall up [seawall.toml]``: run a whole system of service processes until Ctrl-C.

Part of the edges layer: reads the file (:mod:`seawall._up.config`), lets
``SEAWALL_TRANSPORT`` override its transport, runs :class:`~seawall._up.processes.Up`
and shows the live status table (:mod:`seawall._up.status`) until SIGTERM or
Ctrl-C, then stops every process gracefully. Exits 1 if an instance was given
up on.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import signal
import time
from collections.abc import AsyncIterator

import click
from rich.console import Console
from rich.live import Live

from .._exceptions import SeawallError
from ..observability.http import Probes
from ..observability.logs import LogFormat, configure_logging
from ..observability.options import (
    log_format_option,
    log_level_option,
    metrics_option,
    require_prometheus,
)
from .config import UpConfig, load_up_config
from .metrics import UpSource
from .processes import Up
from .status import Rates, handled_by_service, status_table

__all__ = ["up"]

REFRESH = 0.5


async def run_up(
    config: UpConfig,
    console: Console,
    log_level: str,
    log_format: LogFormat = "text",
    metrics: tuple[str, int] | None = None,
) -> None:
    """Run ``config`` with a live table until a signal or a give-up."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    rates = Rates()
    up = Up(config, log_level=log_level, log_format=log_format, metrics=metrics is not None)
    async with _probes(up, metrics, console), up as system:
        title = f"seawall up: {config.root} on {system.transport_url} (logs: {system.logs})"
        with Live(console=console, auto_refresh=False, transient=False) as live:
            while not (stop.is_set() or system.gave_up.is_set()):
                instances = system.refresh()
                rates.update(time.monotonic(), handled_by_service(instances))
                live.update(status_table(instances, rates.rates, title), refresh=True)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), REFRESH)
            console.print("seawall up: stopping (draining every service)")
            await system.stop()
            live.update(status_table(system.refresh(), {}, title), refresh=True)
        if not console.is_terminal:
            console.line()  # off a terminal, the last frame ends without one


@contextlib.asynccontextmanager
async def _probes(up: Up, metrics: tuple[str, int] | None, console: Console) -> AsyncIterator[None]:
    """``/metrics``, ``/healthz`` and ``/readyz`` for every child, with ``--metrics``."""
    if metrics is None:
        yield
        return
    async with Probes(UpSource(up), *metrics) as probes:
        console.print(f"seawall up: metrics on {probes.url}/metrics (/healthz, /readyz)")
        yield


@click.command()
@click.argument("config_file", default="seawall.toml", type=click.Path(dir_okay=False))
@click.option(
    "--transport",
    envvar="SEAWALL_TRANSPORT",
    default=None,
    help='Override the file\'s transport ("embedded" or a URL such as nats://127.0.0.1:4222).',
)
@log_level_option("WARNING")
@log_format_option(" (this process and every service process)")
@metrics_option(" for every service process at once")
def up(
    config_file: str,
    transport: str | None,
    log_level: str,
    log_format: LogFormat,
    metrics: tuple[str, int] | None,
) -> None:
    """Start the broker and every service of CONFIG_FILE as supervised processes."""
    if metrics is not None:
        require_prometheus()
    configure_logging(log_level, log_format)
    try:
        config = load_up_config(config_file)
        if transport:
            config = dataclasses.replace(config, transport=transport)
        asyncio.run(run_up(config, Console(), log_level, log_format, metrics))
    except SeawallError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo("seawall up: stopped cleanly", err=True)
