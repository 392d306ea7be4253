"""``seawall scale SERVICE N`` and ``seawall restart --rolling [SERVICE]``.

Both talk to the ``seawall up`` running from the ``seawall.toml`` of this
directory (``--file``), through its control socket (:mod:`seawall._up.control`),
and return once it is done: the new instances have subscribed, the old ones
have drained and stopped.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import click

from .._exceptions import SeawallError
from .._up.config import load_up_config
from .._up.control import ask

__all__ = ["restart", "scale"]

_FILE = click.option(
    "--file",
    "file",
    default="seawall.toml",
    show_default=True,
    help="The file of the running system (seawall up's).",
)


def _send(file: str, request: dict[str, Any]) -> None:
    try:
        if not Path(file).exists():
            raise click.ClickException(
                f"no {file} here; run in the directory of the system's seawall.toml, or pass --file"
            )
        said = asyncio.run(ask(load_up_config(file).state_dir, request))
    except SeawallError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"seawall: {said}")


@click.command()
@click.argument("service")
@click.argument("instances", type=click.IntRange(min=0))
@_FILE
def scale(service: str, instances: int, file: str) -> None:
    """Run INSTANCES processes of SERVICE in the running seawall up."""
    _send(file, {"command": "scale", "service": service, "instances": instances})


@click.command()
@click.argument("service", required=False)
@click.option(
    "--rolling",
    is_flag=True,
    required=True,
    help="One instance at a time: start a replacement, wait until it runs, drain the old one.",
)
@_FILE
def restart(service: str | None, rolling: bool, file: str) -> None:
    """Restart SERVICE (or every service) of the running seawall up, rolling."""
    if not rolling:
        raise click.UsageError("only rolling restarts exist: pass --rolling")
    _send(file, {"command": "restart", "service": service})
