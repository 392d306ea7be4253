"""The ``seawall`` command line.

Each command lives in a module of its own: ``seawall broker`` serves the embedded
broker to other processes (:mod:`seawall._cli.broker`); ``seawall up`` runs a
whole system of service processes from a ``seawall.toml`` (:mod:`seawall._up.command`);
the others are named after their module in this package (``seawall projections``,
``seawall sagas``, ``seawall channels``, ``seawall contract``, ``seawall gateway``,
``seawall ps``, ``seawall scale``, ``seawall dlq``, ``seawall send``, ``seawall console``…),
and ``seawall --help`` lists them all. ``seawall run module:attr`` imports ``attr``
from ``module`` and runs it in this process until SIGTERM or Ctrl-C, then drains
gracefully (a second Ctrl-C exits at once). Its start line names the transport, and
warns on ``memory://`` (see :mod:`seawall._cli.run`). ``attr`` may be a
:class:`System`, a :class:`Service`, a list of services, or a function returning one
of those. Settings come from options or ``SEAWALL_*`` environment variables; this is
the only place seawall reads the environment.
"""

from __future__ import annotations

import asyncio
import functools
import sys

import click
from click.core import ParameterSource

from .. import __version__
from .._exceptions import SeawallError
from .._runtime.system import System
from .._runtime.target import load_system
from .._up.command import up
from ..observability.logs import LogFormat, configure_logging
from ..observability.options import (
    log_format_option,
    log_level_option,
    metrics_option,
    require_prometheus,
)
from .broker import broker
from .channels import channels
from .console import console
from .contract import contract
from .dlq import dlq
from .gateway import gateway
from .observe import serve
from .projections import projections
from .ps import ps
from .run import memory_warning, start_line
from .sagas import sagas
from .scale import restart, scale
from .send import publish, request, send

__all__ = ["main"]


@click.group()
@click.version_option(__version__, prog_name="seawall")
def main() -> None:
    """seawall: reactive, message-driven microservices."""


@main.command()
@click.argument("target")
@click.option(
    "--transport",
    envvar="SEAWALL_TRANSPORT",
    default="memory://",
    show_default=True,
    help="Transport URL (ignored when TARGET is a System).",
)
@click.option(
    "--grace",
    envvar="SEAWALL_GRACE",
    default=10.0,
    show_default=True,
    help="Seconds in-flight work may take to finish on shutdown.",
)
@log_level_option("INFO")
@log_format_option("")
@metrics_option("")
def run(
    target: str,
    transport: str,
    grace: float,
    log_level: str,
    log_format: LogFormat,
    metrics: tuple[str, int] | None,
) -> None:
    """Run the services of TARGET (MODULE:ATTR) in this process until SIGTERM or Ctrl-C."""
    if metrics is not None:
        require_prometheus()
    configure_logging(log_level, log_format)
    sys.path.insert(0, ".")
    source = click.get_current_context().get_parameter_source("transport")
    try:
        system = load_system(target, transport=transport, grace=grace)
        announce = functools.partial(_announce, target, system, source)
        asyncio.run(serve(system, log_format=log_format, metrics=metrics, ready=announce))
    except SeawallError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"seawall: {target} stopped cleanly", err=True)


def _announce(target: str, system: System, source: ParameterSource | None) -> None:
    click.echo(start_line(target, system), err=True)
    warning = memory_warning(system, defaulted=source is ParameterSource.DEFAULT)
    if warning is not None:
        click.secho(warning, fg="yellow", err=True)


main.add_command(broker)
main.add_command(channels)
main.add_command(contract)
main.add_command(gateway)
main.add_command(up)
main.add_command(projections)
main.add_command(sagas)
main.add_command(ps)
main.add_command(scale)
main.add_command(restart)
main.add_command(dlq)
main.add_command(console)
main.add_command(send)
main.add_command(publish)
main.add_command(request)
