"""``seawall send|publish|request CHANNEL TYPE JSON``: a message into a running system.

Part of the CLI, for operators and for trying a system out (as ``nats req``
does for NATS): the message is a command (``send``, ``request``) or an event
(``publish``) of type TYPE whose body is the JSON given, checked to be JSON
before anything is sent. The receiving service decodes it with its own class
for TYPE, so no class is needed here. ``request`` waits for the reply on an
inbox of its own and prints it as JSON; a handler's failure is printed and
exits 1, as does no reply within ``--timeout`` seconds.
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from typing import Any

import click

from .._exceptions import SeawallError
from .._messages.envelope import Message
from .._messages.ids import uuid7
from .._messages.payload import Kind
from .._runtime.replies import Done, Failure
from .._runtime.system import System
from .._transport.options import redact
from .._transport.schemes import connect

__all__ = ["publish", "request", "send"]

SOURCE = "seawall-cli"

transport_option = click.option(
    "--transport",
    envvar="SEAWALL_TRANSPORT",
    required=True,
    help="Transport URL of the broker, e.g. nats://127.0.0.1:4222.",
)
key_option = click.option("--key", help="Partition key (messages of one key stay in order).")


def _body(text: str) -> bytes:
    try:
        json.loads(text)
    except ValueError as exc:
        raise click.BadParameter(
            f"not JSON ({exc}); give the body as a JSON object, e.g. '{{\"n\": 1}}'",
            param_hint="JSON",
        ) from None
    return text.encode()


def _message(type_: str, text: str, kind: Kind, key: str | None, **more: Any) -> Message:
    now = datetime.now(UTC)
    return Message(
        id=uuid7(),
        type=type_,
        source=SOURCE,
        time=now,
        kind=kind,
        data=_body(text),
        partitionkey=key,
        **more,
    )


def _run(what: str, url: str, work: Any) -> Any:
    try:
        return asyncio.run(work)
    except SeawallError as exc:
        raise click.ClickException(f"could not {what} on {redact(url)}: {exc}") from exc


async def _publish(url: str, channel: str, message: Message) -> None:
    transport = connect(url)
    try:
        await transport.publish(channel, message)
    finally:
        await transport.close()


@click.command()
@click.argument("channel")
@click.argument("type_", metavar="TYPE")
@click.argument("body", metavar="JSON")
@transport_option
@key_option
def send(channel: str, type_: str, body: str, transport: str, key: str | None) -> None:
    """Send a command of TYPE with body JSON to CHANNEL; no reply is awaited."""
    message = _message(type_, body, "command", key)
    _run("send", transport, _publish(transport, channel, message))
    click.echo(f"sent {type_} {message.id} to {channel}")


@click.command()
@click.argument("channel")
@click.argument("type_", metavar="TYPE")
@click.argument("body", metavar="JSON")
@transport_option
@key_option
def publish(channel: str, type_: str, body: str, transport: str, key: str | None) -> None:
    """Publish an event of TYPE with body JSON on CHANNEL, to every group of it."""
    message = _message(type_, body, "event", key)
    _run("publish", transport, _publish(transport, channel, message))
    click.echo(f"published {type_} {message.id} on {channel}")


@click.command()
@click.argument("channel")
@click.argument("type_", metavar="TYPE")
@click.argument("body", metavar="JSON")
@transport_option
@key_option
@click.option("--timeout", default=5.0, show_default=True, help="Seconds to wait for the reply.")
def request(
    channel: str, type_: str, body: str, transport: str, key: str | None, timeout: float
) -> None:
    """Send a command of TYPE with body JSON to CHANNEL and print the reply."""
    _body(body)  # a usage error before connecting
    reply = _run("request", transport, _request(transport, channel, type_, body, key, timeout))
    if reply is None:
        raise click.ClickException(
            f"no reply to {type_} on {channel} within {timeout} s: is a service handling "
            f"{channel} running on {redact(transport)}? (--timeout waits longer)"
        )
    text = json.dumps(json.loads(reply.data or b"null"), indent=2)
    if reply.type == Failure.type_name:
        raise click.ClickException(f"{channel} failed the request: {text}")
    if reply.type == Done.type_name:
        click.echo(f"{channel} handled it (no reply payload)")
        return
    click.echo(f"{reply.type} from {reply.source}:")
    click.echo(text)


async def _request(
    url: str, channel: str, type_: str, body: str, key: str | None, timeout: float
) -> Message | None:
    async with System(transport=url, instance=f"{SOURCE}-{uuid7()}") as client:
        node = client.node
        deadline = node.clock.time() + timeout
        message = _message(
            type_,
            body,
            "command",
            key,
            replyto=node.inbox,
            deadline=datetime.fromtimestamp(deadline, UTC),
        )
        future = node.replies.expect(message.id, 1, deadline, node.clock.time())
        await node.transport.publish(channel, message)
        try:
            replies = await asyncio.wait_for(future, timeout)
        except TimeoutError:
            return None
        finally:
            node.replies.forget(message.id)
        return replies[0]
