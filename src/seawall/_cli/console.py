"""``seawall console --transport URL``: the operator's web console of a running system.

Part of the CLI. Serves the page of :mod:`seawall.console.web` on ``--listen``
until SIGTERM or Ctrl-C: the live topology from the registry, and the dead
letters of every announced group (and of ``--dlq`` names), which the page
redrives or purges with the operator token. ``--app MODULE:ATTR`` lets it
decode bodies with the payload classes of those services.
"""

from __future__ import annotations

import asyncio
import signal

import click

from .._exceptions import SeawallError
from .._messages.payload import TypeRegistry
from .._runtime.target import load_system
from .._transport.options import redact
from ..console.options import ListenType, require_web, token_option

__all__ = ["console"]


@click.command()
@click.option(
    "--transport",
    envvar="SEAWALL_TRANSPORT",
    required=True,
    help="Transport URL of the system's broker, e.g. nats://127.0.0.1:4222.",
)
@click.option(
    "--listen",
    type=ListenType(),
    default="127.0.0.1:8800",
    show_default=True,
    help="Where to serve the page.",
)
@token_option
@click.option("--app", metavar="MODULE:ATTR", help="The services, to decode message bodies.")
@click.option("--dlq", "dlqs", multiple=True, help="Also watch this dead-letter channel.")
def console(
    transport: str,
    listen: tuple[str, int],
    operator_token: str | None,
    app: str | None,
    dlqs: tuple[str, ...],
) -> None:
    """Serve the web console of the system on TRANSPORT until Ctrl-C."""
    require_web()
    registry = None
    try:
        if app is not None:
            registry = load_system(app, transport="memory://", grace=0.0).registry
        asyncio.run(_serve(transport, listen, operator_token, registry, dlqs))
    except SeawallError as exc:
        raise click.ClickException(f"console of {redact(transport)}: {exc}") from exc
    except OSError as exc:
        raise click.ClickException(f"cannot serve the console on {listen}: {exc}") from exc


async def _serve(
    transport: str,
    listen: tuple[str, int],
    token: str | None,
    registry: TypeRegistry | None,
    dlqs: tuple[str, ...],
) -> None:
    from ..console.web import open_console

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    async with open_console(transport, listen, token=token, registry=registry, dlqs=dlqs) as page:
        mode = "operator token set" if token else "read-only (no operator token)"
        click.echo(f"seawall console: {page} for {redact(transport)}, {mode}", err=True)
        await stop.wait()
    click.echo("seawall console: stopped", err=True)
