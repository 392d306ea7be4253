"""``seawall dlq ls|show|redrive|purge``: dead letters on any broker, from a terminal.

Part of the CLI; the work is :class:`seawall.console.deadletters.DeadLetterView`
(reading consumes nothing; redrive and purge settle one dead letter at a time).
A dead-letter channel is named by itself (``orders.dlq``) or by its consumer
group (``orders``). ``ls`` without names lists the dead-letter channels of the
groups the running system announces on the registry (or of ``--app``'s
services). ``--app MODULE:ATTR`` also lets ``show`` decode bodies with the
payload classes of those services.
"""

from __future__ import annotations

import asyncio
import collections
import json
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import click

from .._exceptions import SeawallError
from .._messages.payload import TypeRegistry
from .._runtime.target import load_system
from .._transport.options import redact
from .._transport.schemes import connect
from ..console.deadletters import DeadLetter, DeadLetterView, Filter, dlq_name
from ..console.describe import describe
from ..console.topology import announced

__all__ = ["dlq"]

T = TypeVar("T")

transport_option = click.option(
    "--transport",
    envvar="SEAWALL_TRANSPORT",
    required=True,
    help="Transport URL of the broker, e.g. nats://127.0.0.1:4222.",
)
app_option = click.option(
    "--app", metavar="MODULE:ATTR", help="The services, to know their groups and message types."
)


def _filters(fn: Callable[..., Any]) -> Callable[..., Any]:
    fn = click.option("--reason", help="Only dead letters given up for this reason.")(fn)
    fn = click.option("--type", "type_", metavar="TYPE", help="Only messages of this type.")(fn)
    return click.option(
        "--id", "ids", multiple=True, help="Only this message id or dead-letter key (repeatable)."
    )(fn)


def _filter(reason: str | None, type_: str | None, ids: tuple[str, ...]) -> Filter:
    return Filter(reason=reason, type=type_, ids=frozenset(ids))


def _run(what: str, url: str, work: Coroutine[Any, Any, T]) -> T:
    try:
        return asyncio.run(work)
    except SeawallError as exc:
        raise click.ClickException(f"could not {what} on {redact(url)}: {exc}") from exc


@click.group()
def dlq() -> None:
    """Dead letters: list, read, send back to their channel, or purge."""


@dlq.command(name="ls")
@click.argument("names", nargs=-1)
@transport_option
@app_option
def ls(names: tuple[str, ...], transport: str, app: str | None) -> None:
    """Per dead-letter channel: how many, why, and the oldest (NAMES: channels or groups)."""
    channels = [dlq_name(n) for n in names] or _known_channels(transport, app)
    if not channels:
        raise click.ClickException(
            "no dead-letter channel to list: name them (seawall dlq ls orders.dlq), give "
            "--app MODULE:ATTR, or run the system so that it announces its groups"
        )
    found = _run("list dead letters", transport, _read_all(transport, channels))
    for channel, letters in found.items():
        click.echo(_summary(channel, letters))


@dlq.command()
@click.argument("name")
@transport_option
@app_option
@_filters
def show(
    name: str,
    transport: str,
    app: str | None,
    reason: str | None,
    type_: str | None,
    ids: tuple[str, ...],
) -> None:
    """Print the dead letters of NAME: envelope, headers, reason, error and body."""
    registry = _registry(app)
    channel = dlq_name(name)
    found = _run("read dead letters", transport, _read_all(transport, [channel]))
    letters = [x for x in found[channel] if _filter(reason, type_, ids)(x)]
    for letter in letters:
        click.echo(json.dumps(describe(letter, registry), indent=2, default=str))
    click.echo(f"{len(letters)} dead letter(s) shown of {len(found[channel])} on {channel}")


@dlq.command()
@click.argument("name")
@transport_option
@_filters
def redrive(
    name: str, transport: str, reason: str | None, type_: str | None, ids: tuple[str, ...]
) -> None:
    """Send the dead letters of NAME back to their channels (all, or those filtered)."""
    channel = dlq_name(name)
    which = _filter(reason, type_, ids)
    sent = _run("redrive", transport, _settle(transport, channel, which, redrive=True))
    for letter in sent:
        click.echo(f"redriven {letter.message.id} ({letter.message.type}) to {letter.origin}")
    click.echo(f"{len(sent)} dead letter(s) of {channel} sent back")


@dlq.command()
@click.argument("name")
@transport_option
@_filters
@click.option("--yes", "-y", is_flag=True, help="Purge without asking first.")
def purge(
    name: str,
    transport: str,
    reason: str | None,
    type_: str | None,
    ids: tuple[str, ...],
    yes: bool,
) -> None:
    """Drop the dead letters of NAME for good (all, or those filtered)."""
    channel = dlq_name(name)
    which = _filter(reason, type_, ids)
    if not yes:
        some = "all dead letters" if which == Filter() else "the dead letters filtered"
        click.confirm(f"Drop {some} of {channel} on {redact(transport)} for good?", abort=True)
    dropped = _run("purge", transport, _settle(transport, channel, which, redrive=False))
    click.echo(f"{len(dropped)} dead letter(s) of {channel} purged")


def _registry(app: str | None) -> TypeRegistry | None:
    if app is None:
        return None
    try:
        return load_system(app, transport="memory://", grace=0.0).registry
    except SeawallError as exc:
        raise click.ClickException(f"--app {app}: {exc}") from exc


def _known_channels(url: str, app: str | None) -> list[str]:
    if app is not None:
        system = load_system(app, transport="memory://", grace=0.0)
        groups = {g for s in system.services for (_, g) in s.subscriptions}
    else:
        groups = set(_run("read the registry", url, _announced_groups(url)))
    return sorted(dlq_name(g) for g in groups)


async def _announced_groups(url: str) -> list[str]:
    transport = connect(url)
    try:
        heard = await announced(transport)
    finally:
        await transport.close()
    return [h.group for a in heard for h in a.handles]


async def _read_all(url: str, channels: list[str]) -> dict[str, list[DeadLetter]]:
    transport = connect(url)
    try:
        found = {}
        for channel in channels:
            async with DeadLetterView(transport, channel) as view:
                found[channel] = await view.settle_in()
        return found
    finally:
        await transport.close()


async def _settle(url: str, channel: str, which: Filter, *, redrive: bool) -> list[DeadLetter]:
    transport = connect(url)
    try:
        async with DeadLetterView(transport, channel) as view:
            await view.settle_in()
            if redrive:
                return await view.redrive(which, by="seawall dlq")
            return await view.purge(which, by="seawall dlq")
    finally:
        await transport.close()


def _summary(channel: str, letters: list[DeadLetter]) -> str:
    if not letters:
        return f"{channel}: empty"
    reasons = collections.Counter(x.reason or "?" for x in letters)
    why = ", ".join(f"{n} {r}" for r, n in reasons.most_common())
    times = [x.at for x in letters if x.at is not None]
    oldest = f"; oldest {min(times).isoformat(timespec='seconds')}" if times else ""
    return f"{channel}: {len(letters)} dead letter(s) ({why}){oldest}"
