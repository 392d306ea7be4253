"""The ``seawall`` command line.

``seawall broker`` serves the embedded broker to other processes (see
:mod:`seawall._cli.broker`); ``seawall up`` runs a whole system of service
processes from a ``seawall.toml`` (see :mod:`seawall._up.command`); ``seawall
projections`` shows and rebuilds CQRS projections (see
:mod:`seawall._cli.projections`); ``seawall channels delete`` deletes a
channel or one group of it (see :mod:`seawall._cli.channels`). ``seawall run
module:attr`` imports ``attr`` from ``module`` and runs it in this process
until SIGTERM or Ctrl-C, then drains gracefully. ``attr`` may be a
:class:`System`, a :class:`Service`, a list of services, or a function
returning one of those. Settings come from options or ``SEAWALL_*``
environment variables; this is the only place seawall reads the environment.
"""

from __future__ import annotations

import asyncio
import logging
import sys

import click

from .. import __version__
from .._exceptions import SeawallError
from .._runtime.target import load_system
from .._up.command import up
from .broker import broker
from .channels import channels
from .projections import projections

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
@click.option("--log-level", envvar="SEAWALL_LOG_LEVEL", default="INFO", show_default=True)
def run(target: str, transport: str, grace: float, log_level: str) -> None:
    """Run the services of TARGET (MODULE:ATTR) in this process until SIGTERM or Ctrl-C."""
    logging.basicConfig(
        level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    sys.path.insert(0, ".")
    try:
        system = load_system(target, transport=transport, grace=grace)
        asyncio.run(system.serve())
    except SeawallError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"seawall: {target} stopped cleanly", err=True)


main.add_command(broker)
main.add_command(channels)
main.add_command(up)
main.add_command(projections)
