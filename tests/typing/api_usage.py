"""Checked by ``mypy --strict`` (not run by pytest): the public API keeps its types.

Each ``assert_type`` fails type checking if an annotation regresses; each
``type: ignore[...]`` must stay necessary (strict mode warns on unused ones).
"""

from __future__ import annotations

from typing import Any, assert_type

from seawall import (
    Command,
    Context,
    Document,
    Event,
    Expired,
    MemoryTransport,
    Reply,
    RetryPolicy,
    Service,
    System,
    Upcasters,
)
from seawall.testing import StartTestSystem, TestSystem


class Quote(Command, frozen=True):
    type_name = "shop.Quote"
    item: str


class Price(Document, frozen=True):
    cents: int


class Sold(Event, frozen=True):
    item: str


shop = Service("shop", concurrency=8, retry=RetryPolicy(max_attempts=3))


@shop.command
async def quote(cmd: Quote, ctx: Context) -> Price:
    await ctx.publish(Sold(item=cmd.item), key=cmd.item)
    return Price(cents=len(cmd.item))


@shop.subscribe("shop.events", group="audit")
async def on_sold(event: Sold) -> None:
    return None


async def direct_call(ctx: Context) -> None:
    """The decorators hand back the function unchanged, signature included."""
    price = await quote(Quote(item="tea"), ctx)
    assert_type(price, Price)
    await on_sold(Sold(item="tea"))
    await quote("not a command", ctx)  # type: ignore[arg-type]


async def interaction_styles(ctx: Context) -> None:
    await ctx.send("shop", Quote(item="a"))
    await ctx.publish(Sold(item="a"))
    pending = ctx.request("shop", Quote(item="b"), returns=Price, timeout=2.0)
    assert_type(pending, Reply[Price])
    price = await pending
    assert_type(price, Price)
    untyped = await ctx.request("shop", Quote(item="c"))
    assert_type(untyped, Any)
    offers = await ctx.gather("couriers", Quote(item="d"), returns=Price, timeout=1.0, count=3)
    assert_type(offers, list[Price])


def payloads_are_frozen(q: Quote) -> None:
    q.item = "changed"  # type: ignore[misc]


async def systems() -> None:
    async with System(shop, transport=MemoryTransport()) as system:
        ctx = system.context()
        assert_type(ctx, Context)
    async with TestSystem(shop) as test:
        assert_type(test.sent(Sold), list[Sold])


async def test_with_the_fixture(seawall_system: StartTestSystem) -> None:
    system = await seawall_system(shop, raise_handler_errors=False)
    assert_type(system, TestSystem)
    await seawall_system("not a service")  # type: ignore[arg-type]


class QuoteV2(Command, frozen=True):
    type_name = "shop.Quote"
    type_version = "2.0.0"
    item: str
    qty: int


@shop.upcaster
def quote_v2(old: Quote) -> QuoteV2:
    return QuoteV2(item=old.item, qty=1)


def versions_and_expiry() -> None:
    """Both forms of upcaster keep the function's type; the expiry policy is a literal."""
    assert_type(quote_v2(Quote(item="x")), QuoteV2)
    chain = Upcasters()

    @chain.upcaster("shop.Quote", "1.0.0", "2.0.0")
    def on_fields(fields: dict[str, Any]) -> dict[str, Any]:
        return {**fields, "qty": 1}

    assert_type(on_fields({}), dict[str, Any])
    chain.upcaster("shop.Quote", "1.0.0")  # type: ignore[call-overload]
    policy: Expired = "drop"
    Service("quotes", upcasters=chain, expired=policy)
    Service("quotes", expired="keep")  # type: ignore[arg-type]
    Service("quotes", requests="direct")  # how its requests travel is a literal too
    Service("quotes", requests="fast")  # type: ignore[arg-type]


async def one_way_with_a_deadline(ctx: Context) -> None:
    await ctx.send("shop", Quote(item="a"), deadline=ctx.now + 5.0)
