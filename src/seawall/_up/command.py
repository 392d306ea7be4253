"""``seawall up [seawall.toml]``: run a whole system of service processes until Ctrl-C.

Part of the edges layer: reads the file (:mod:`seawall._up.config`), lets
``SEAWALL_TRANSPORT`` override its transport, runs :class:`~seawall._up.processes.Up`
and says at once where the broker is (its unix socket for the services, and the
file's ``listen`` address for clients outside the system). Then it shows how the
services do until SIGTERM or Ctrl-C: on a terminal a live table
(:mod:`seawall._up.status`), elsewhere (a pipe, a log file, CI) plain status
lines every ``--status-every`` seconds. A process that exits on its own is told
of on the spot, with its last log lines. The first signal stops every process
gracefully; a second kills them all at once (:mod:`seawall._runtime.interrupts`).
Exits 1 if the system stopped on its own: an instance was given up on, or a
target does not load.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import os
import time
from collections.abc import AsyncIterator, Callable

import click
from rich.console import Console
from rich.live import Live
from rich.text import Text

from .._exceptions import SeawallError
from .._runtime.interrupts import interrupts
from .._transport.options import redact
from ..console.options import ListenType, require_web, token_option
from ..observability.http import Probes
from ..observability.logs import LogFormat, configure_logging
from ..observability.options import (
    log_format_option,
    log_level_option,
    metrics_option,
    require_prometheus,
)
from .config import UpConfig, load_up_config
from .console import web_console
from .control import Control
from .metrics import UpSource
from .processes import Up
from .status import Rates, handled_by_service, status_lines, status_table

__all__ = ["run_up", "up", "where_lines"]

REFRESH = 0.5
STATUS_EVERY = 5.0
FIXED_ADDRESS = 'listen = "127.0.0.1:7400"'
SECOND_SIGNAL = (
    "seawall up: a second Ctrl-C: killed the broker and every service process, draining "
    "nothing (what they had not settled is delivered again when the system next starts)"
)


async def run_up(
    config: UpConfig,
    console: Console,
    log_level: str,
    log_format: LogFormat = "text",
    metrics: tuple[str, int] | None = None,
    *,
    status_every: float = STATUS_EVERY,
    web: tuple[str, int] | None = None,
    operator_token: str | None = None,
) -> None:
    """Run ``config``, showing its state, until a signal or until it stops on its own.

    ``web``: serve the web console there (with ``operator_token``, if given)."""
    stop = asyncio.Event()
    system = Up(
        config,
        log_level=log_level,
        log_format=log_format,
        metrics=metrics is not None,
        notify=lambda text: _notice(console, text),
    )
    with interrupts(stop.set, second=SECOND_SIGNAL, force=lambda: _kill(system, console)):
        say = functools.partial(_say, console)
        async with (
            _probes(system, metrics, console),
            system,
            Control(system),
            web_console(system, web, operator_token, say),
        ):
            for line in where_lines(system):
                _say(console, line)
            if console.is_terminal:
                await _live(system, console, stop)
            else:
                await _plain(system, console, stop, status_every)


def where_lines(system: Up) -> list[str]:
    """Where the broker is, for the services and for clients outside the system."""
    config = system.config
    processes = f"{_count(len(system.instances), 'process')} of " + _count(
        len(config.services), "service"
    )
    if not config.embedded:
        where = f"seawall up: services on {redact(system.transport_url)} (no broker started)"
    elif system.listen_url is not None:
        where = (
            f"seawall up: broker at {system.listen_url} for clients outside the system "
            f"(SEAWALL_TRANSPORT={system.listen_url}); its services use {system.transport_url}"
        )
        if not _loopback(config.listen or ""):
            where += "; it takes any client that reaches it (no tokens): keep it on a trusted net"
    else:
        where = (
            f"seawall up: broker at {system.transport_url}, for this run only; "
            f"{FIXED_ADDRESS} in {_file_name(config)} gives it a fixed address for clients "
            "outside"
        )
    return [
        where,
        f"seawall up: {processes}, logs in {system.logs}; Ctrl-C stops them gracefully, "
        "a second Ctrl-C kills them",
    ]


def _loopback(listen: str) -> bool:
    host = listen.rpartition(":")[0].strip("[]")
    return host == "localhost" or host == "::1" or host.startswith("127.")


def _file_name(config: UpConfig) -> str:
    return "seawall.toml" if config.file is None else config.file.name


def _count(n: int, thing: str) -> str:
    return f"{n} {thing}" if n == 1 else f"{n} {thing}{'es' if thing.endswith('s') else 's'}"


def _title(system: Up) -> str:
    return f"seawall up: {system.config.file or system.config.root}"  # where: said at start


async def _live(system: Up, console: Console, stop: asyncio.Event) -> None:
    """The live table, redrawn twice a second; its last frame stays."""
    rates = Rates()
    with Live(console=console, auto_refresh=False, transient=False) as live:

        def draw() -> None:
            instances = system.refresh()
            rates.update(time.monotonic(), handled_by_service(instances))
            live.update(status_table(instances, rates.rates, _title(system)), refresh=True)

        await _until_stopped(system, stop, draw)
        await _stop(system, console)
        live.update(status_table(system.refresh(), {}, _title(system)), refresh=True)


async def _plain(system: Up, console: Console, stop: asyncio.Event, every: float) -> None:
    """Plain status lines every ``every`` seconds, and the table once stopped."""
    rates = Rates()
    start = last = time.monotonic()

    def tick() -> None:
        nonlocal last
        now = time.monotonic()
        instances = system.refresh()
        rates.update(now, handled_by_service(instances))
        if now - last >= every:
            last = now
            for line in status_lines(instances, rates.rates, now - start):
                _say(console, line)

    await _until_stopped(system, stop, tick)
    await _stop(system, console)
    console.print(status_table(system.refresh(), {}, _title(system)))


async def _until_stopped(system: Up, stop: asyncio.Event, tick: Callable[[], None]) -> None:
    while not (stop.is_set() or system.gave_up.is_set()):
        tick()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), REFRESH)


async def _stop(system: Up, console: Console) -> None:
    if system.failure is None:
        _say(console, "seawall up: stopping (draining every service; Ctrl-C again kills them)")
    await system.stop()


def _notice(console: Console, text: str) -> None:
    _say(console, f"seawall up: {text}", style="yellow")


def _say(console: Console, line: str, style: str = "") -> None:
    """One line as it is: no markup read into it, not wrapped at the console's width."""
    console.print(Text(line, style=style), soft_wrap=True)


def _kill(system: Up, console: Console) -> None:
    system.kill()
    if console.is_terminal:
        os.write(1, b"\x1b[?25h\n")  # the live table hid the cursor; exiting now, show it


@contextlib.asynccontextmanager
async def _probes(up: Up, metrics: tuple[str, int] | None, console: Console) -> AsyncIterator[None]:
    """``/metrics``, ``/healthz`` and ``/readyz`` for every child, with ``--metrics``."""
    if metrics is None:
        yield
        return
    async with Probes(UpSource(up), *metrics) as probes:
        _say(console, f"seawall up: metrics on {probes.url}/metrics (/healthz, /readyz)")
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
@click.option(
    "--status-every",
    type=click.FloatRange(min=0.1),
    default=STATUS_EVERY,
    show_default=True,
    help="Seconds between status lines when the output is not a terminal.",
)
@click.option(
    "--console",
    "web",
    type=ListenType(),
    default=None,
    help="Serve the web console (topology, rates, dead letters) on HOST:PORT.",
)
@token_option
def up(
    config_file: str,
    transport: str | None,
    log_level: str,
    log_format: LogFormat,
    metrics: tuple[str, int] | None,
    status_every: float,
    web: tuple[str, int] | None,
    operator_token: str | None,
) -> None:
    """Start the broker and every service of CONFIG_FILE as supervised processes."""
    if metrics is not None:
        require_prometheus()
    if web is not None:
        require_web()
    configure_logging(log_level, log_format)
    try:
        config = load_up_config(config_file)
        if transport:
            config = dataclasses.replace(config, transport=transport)
        run = run_up(
            config,
            Console(),
            log_level,
            log_format,
            metrics,
            status_every=status_every,
            web=web,
            operator_token=operator_token,
        )
        asyncio.run(run)
    except SeawallError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo("seawall up: stopped cleanly", err=True)
