"""Context.envelope: the message publish or send would put on a channel, not sent."""

from __future__ import annotations

from seawall import Command, Context, Event, Service
from seawall.testing import TestSystem


class Ship(Command, frozen=True):
    order_id: str


class Shipped(Event, frozen=True):
    order_id: str


async def test_an_envelope_is_built_like_a_publish_and_not_sent() -> None:
    built = []
    shop = Service("shop")

    @shop.command
    async def ship(cmd: Ship, ctx: Context) -> None:
        built.append(ctx.envelope(Shipped(order_id=cmd.order_id), key=cmd.order_id, subject="o"))

    async with TestSystem(shop) as system:
        await system.context().send("shop", Ship(order_id="o-1"))
        await system.settle()
        (command,) = system.messages("shop")
        assert system.messages("shop.events") == []
    (message,) = built
    assert (message.type, message.source, message.kind) == ("Shipped", "shop", "event")
    assert (message.partitionkey, message.subject) == ("o-1", "o")
    assert (message.causationid, message.correlationid) == (command.id, command.id)
    assert message.id != command.id
