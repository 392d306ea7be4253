"""``seawall gateway MODULE:ATTR --listen HOST:PORT``: serve an HTTP API gateway with uvicorn.

``MODULE:ATTR`` names a :class:`seawall.gateway.Gateway`. Its requests go
through the gateway's own system when it declares one, else through a client
of ``--transport`` (``SEAWALL_TRANSPORT``). SIGINT or SIGTERM stop intake,
let open requests finish, then drain the system.
"""

from __future__ import annotations

import asyncio
import functools
import sys

import click

from .._exceptions import SeawallError
from ..observability.http import parse_listen
from ..observability.logs import LogFormat, configure_logging
from ..observability.options import log_format_option, log_level_option

__all__ = ["gateway"]


@click.command()
@click.argument("target")
@click.option(
    "--listen",
    envvar="SEAWALL_GATEWAY_LISTEN",
    default="127.0.0.1:8000",
    show_default=True,
    help="HOST:PORT to serve HTTP on.",
)
@click.option(
    "--transport",
    envvar="SEAWALL_TRANSPORT",
    default="memory://",
    show_default=True,
    help="Transport URL (ignored when the gateway declares its own system).",
)
@log_level_option("INFO")
@log_format_option("")
def gateway(
    target: str, listen: str, transport: str, log_level: str, log_format: LogFormat
) -> None:
    """Serve the HTTP API gateway TARGET (MODULE:ATTR) until SIGTERM or Ctrl-C."""
    configure_logging(log_level, log_format)
    sys.path.insert(0, ".")
    try:
        from ..gateway import serve
        from ..gateway._load import load_gateway

        host, port = parse_listen(listen)
        api, system = load_gateway(target, transport=transport)
        app = api.app(system, start_system=True)
        asyncio.run(serve(app, host, port, ready=functools.partial(_listening, target)))
    except SeawallError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"seawall: gateway {target} stopped cleanly", err=True)


def _listening(target: str, url: str) -> None:
    click.echo(f"seawall: gateway {target} on {url} (docs: {url}/docs)", err=True)
