"""``seawall channels delete NAME``: delete a channel, or one group of it, on a broker.

The broker comes from ``--transport URL`` (or ``SEAWALL_TRANSPORT``), as for
``seawall run``. Deleting a channel takes its messages and every group of it;
``--group G`` deletes only that group (its position and what it had not
settled), and the channel and its other groups go on. A dead-letter channel
is a channel of its own (``seawall channels delete orders.dlq``). The command
asks before deleting unless ``--yes`` is given; deleting what does not exist
does nothing. See :meth:`seawall.Transport.delete`.
"""

from __future__ import annotations

import asyncio

import click

from .._exceptions import SeawallError
from .._transport.options import redact
from .._transport.schemes import connect

__all__ = ["channels"]


@click.group()
def channels() -> None:
    """Manage the channels of a broker."""


@channels.command()
@click.argument("name")
@click.option("--group", help="Delete only this group of the channel.")
@click.option(
    "--transport",
    envvar="SEAWALL_TRANSPORT",
    required=True,
    help="Transport URL of the broker, e.g. nats://127.0.0.1:4222.",
)
@click.option("--yes", "-y", is_flag=True, help="Delete without asking first.")
def delete(name: str, group: str | None, transport: str, yes: bool) -> None:
    """Delete channel NAME with its messages and groups, or only its group --group."""
    what = f"channel {name!r}" if group is None else f"group {group!r} of channel {name!r}"
    where = redact(transport)
    if not yes:
        lost = "its messages and every group of it" if group is None else "its position"
        click.confirm(f"Delete {what} on {where}, with {lost}?", abort=True)
    try:
        asyncio.run(_delete(transport, name, group))
    except SeawallError as exc:
        raise click.ClickException(f"could not delete {what} on {where}: {exc}") from exc
    click.echo(f"deleted {what} on {where}")


async def _delete(url: str, name: str, group: str | None) -> None:
    transport = connect(url)
    try:
        await transport.delete(name, group=group)
    finally:
        await transport.close()
