"""The ``seawall`` command line.

``seawall broker`` serves the embedded broker to other processes (see
:mod:`seawall._cli.broker`); ``seawall up`` runs a whole system of service
processes from a ``seawall.toml`` (see :mod:`seawall._up.command`); ``seawall
projections`` shows and rebuilds CQRS projections (see
:mod:`seawall._cli.projections`). ``seawall run module:attr`` imports ``attr``
from ``module`` and runs it in this process until SIGTERM or Ctrl-C, then
drains gracefully. ``attr`` may be a :class:`System`, a :class:`Service`, a
list of services, or a function returning one of those. Settings come from
options or ``SEAWALL_*`` environment variables; this is the only place seawall
reads the environment.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import sys
from collections.abc import Sequence
from typing import Any

import click

from .. import __version__
from .._exceptions import ConfigurationError, SeawallError
from .._runtime.service import Service
from .._runtime.system import System
from .._up.command import up
from .broker import broker
from .projections import projections

__all__ = ["load_system", "main"]


def load_system(
    target: str, *, transport: str, grace: float, instance: str | None = None
) -> System:
    """Import ``module:attr`` and make a :class:`System` of it (named ``instance`` if given)."""
    module_name, _, attr = target.partition(":")
    if not module_name or not attr:
        raise ConfigurationError(f"expected MODULE:ATTR (e.g. 'shop.app:system'), got {target!r}")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigurationError(f"cannot import module {module_name!r}: {exc}") from exc
    try:
        obj: Any = getattr(module, attr)
    except AttributeError:
        raise ConfigurationError(f"module {module_name!r} has no attribute {attr!r}") from None
    if callable(obj) and not isinstance(obj, Service | System):
        obj = obj()
    if isinstance(obj, System):
        return obj
    if isinstance(obj, Service):
        obj = [obj]
    if isinstance(obj, Sequence) and obj and all(isinstance(s, Service) for s in obj):
        return System(*obj, transport=transport, grace=grace, instance=instance)
    raise ConfigurationError(
        f"{target} is a {type(obj).__name__}; expected a System, a Service, a list of "
        "services, or a function returning one of those"
    )


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
main.add_command(up)
main.add_command(projections)
