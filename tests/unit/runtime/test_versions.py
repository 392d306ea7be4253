"""Schema versions on every decode path: a message is read in the major version it names,
by the handler of that major or through an upcaster, and is never misread as another."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from seawall import (
    Command,
    ConfigurationError,
    Document,
    Event,
    Service,
    System,
    UnexpectedReply,
    Upcasters,
)
from seawall.es import EventCodec, OutboxRelay, SQLiteEventStore
from seawall.testing import TestSystem

# -- one message type, three majors: what a slow rolling upgrade puts on one channel


class ItemV1(Command, frozen=True):
    type_name = "shop.Item"
    type_version = "1.2.0"
    sku: str
    price: float
    """Euros."""


class ItemV2(Command, frozen=True):
    type_name = "shop.Item"
    type_version = "2.0.0"
    sku: str
    cents: int


class ItemV3(Command, frozen=True):
    type_name = "shop.Item"
    type_version = "3.0.0"
    sku: str
    cents: int
    currency: str


class ItemV9(Command, frozen=True):
    """A breaking change nobody here has heard of: ``price`` is now in cents."""

    type_name = "shop.Item"
    type_version = "9.0.0"
    sku: str
    price: int


class Other(Command, frozen=True):
    type_name = "shop.Other"
    n: int


def euros_to_cents(fields: dict[str, Any]) -> dict[str, Any]:
    return {"sku": fields["sku"], "cents": round(fields["price"] * 100)}


def add_currency(fields: dict[str, Any]) -> dict[str, Any]:
    return {**fields, "currency": "EUR"}


async def send(system: TestSystem, channel: str, *payloads: Command) -> None:
    ctx = system.context()
    for payload in payloads:
        await ctx.send(channel, payload)
    await system.settle()


# -- a breaking major version is refused on every handler shape


async def test_a_single_type_handler_does_not_misread_a_breaking_major() -> None:
    seen: list[ItemV1] = []
    shop = Service("shop")

    @shop.command
    async def take(item: ItemV1) -> None:
        seen.append(item)

    async with TestSystem(shop) as system:
        await send(system, "shop", ItemV9(sku="tea", price=1250), ItemV1(sku="tea", price=12.5))
        [dead] = system.dead_letters("shop")
        stats = system.system.stats()["shop:shop/shop"]
    assert seen == [ItemV1(sku="tea", price=12.5)]  # not ItemV1(price=1250.0): 100 x too dear
    assert dead.dataschema == "urn:seawall:shop.Item:9.0.0"
    assert dead.headers["seawall-dlq-reason"] == "unknown-version"
    error = dead.headers["seawall-dlq-error"]
    assert "UnknownVersion" in error
    assert "'shop.Item' arrived in version 9.0.0" in error
    assert "takes only ItemV1 (1.2.0)" in error  # which versions the service takes
    assert (stats.handled, stats.dead_lettered) == (1, 1)


async def test_the_check_holds_for_every_message_not_only_the_first() -> None:
    """The decoder cache must not carry a message past the check once a good one warmed it."""
    seen: list[ItemV1] = []
    shop = Service("shop")

    @shop.command
    async def take(item: ItemV1) -> None:
        seen.append(item)

    async with TestSystem(shop) as system:
        await send(system, "shop", *[ItemV1(sku=f"s{n}", price=1.0) for n in range(3)])
        await send(system, "shop", ItemV9(sku="x", price=1), ItemV1(sku="last", price=2.0))
        reasons = [m.headers["seawall-dlq-reason"] for m in system.dead_letters("shop")]
    assert [item.sku for item in seen] == ["s0", "s1", "s2", "last"]
    assert reasons == ["unknown-version"]


async def test_a_union_handler_refuses_it_as_unknown_version_too() -> None:
    seen: list[object] = []
    shop = Service("shop")

    @shop.command
    async def take(item: ItemV1 | Other) -> None:
        seen.append(item)

    async with TestSystem(shop) as system:
        await send(system, "shop", ItemV9(sku="tea", price=1250), Other(n=1), Other(n=2))
        [dead] = system.dead_letters("shop")
    assert seen == [Other(n=1), Other(n=2)]
    assert dead.headers["seawall-dlq-reason"] == "unknown-version"


class Shipped(Event, frozen=True):
    type_name = "shop.Shipped"
    order: str


class ShippedV2(Event, frozen=True):
    type_name = "shop.Shipped"
    type_version = "2.0.0"
    order: str
    carrier: str


async def test_an_event_subscription_dead_letters_an_unknown_major_and_skips_unknown_types() -> (
    None
):
    seen: list[Shipped] = []
    audit = Service("audit")

    @audit.subscribe("shop.events")
    async def on_shipped(event: Shipped) -> None:
        seen.append(event)

    async with TestSystem(audit) as system:
        ctx = system.context("shop")
        await ctx.publish(ShippedV2(order="o-1", carrier="dhl"), channel="shop.events")
        await ctx.publish(Other(n=1), channel="shop.events")
        await ctx.publish(Shipped(order="o-2"), channel="shop.events")
        await system.settle()
        [dead] = system.dead_letters("audit")
        stats = system.system.stats()["audit:shop.events/audit"]
    assert seen == [Shipped(order="o-2")]
    assert dead.headers["seawall-dlq-reason"] == "unknown-version"
    assert stats.skipped == 1  # the type nobody here handles is still skipped


# -- two majors side by side, each to its own handler


def two_majors() -> tuple[Service, list[object]]:
    shop = Service("shop")
    seen: list[object] = []

    @shop.command
    async def take_v1(item: ItemV1) -> None:
        seen.append(item)

    @shop.command
    async def take_v2(item: ItemV2) -> None:
        seen.append(item)

    return shop, seen


async def test_two_majors_of_one_type_each_reach_their_own_handler() -> None:
    class ItemV1Old(Command, frozen=True):
        """What a producer still on 1.0.0 sends: a minor version below the handler's."""

        type_name = "shop.Item"
        type_version = "1.0.0"
        sku: str
        price: float

    shop, seen = two_majors()
    async with TestSystem(shop) as system:
        await send(
            system,
            "shop",
            ItemV1(sku="a", price=1.5),
            ItemV2(sku="b", cents=250),
            ItemV1Old(sku="c", price=3.0),
            ItemV2(sku="d", cents=400),
        )
        assert system.dead_letters("shop") == []
    assert seen == [
        ItemV1(sku="a", price=1.5),
        ItemV2(sku="b", cents=250),
        ItemV1(sku="c", price=3.0),
        ItemV2(sku="d", cents=400),
    ]


async def test_a_message_that_names_no_version_is_read_as_the_newest_major() -> None:
    shop, seen = two_majors()
    async with TestSystem(shop) as system:
        message = system.system.node.envelope(ItemV2(sku="x", cents=1), source="foreign")
        unversioned = type(message)(**{**_fields(message), "dataschema": None})
        await system.transport.publish("shop", unversioned)
        await system.settle()
    assert seen == [ItemV2(sku="x", cents=1)]


def _fields(message: Any) -> dict[str, Any]:
    return {name: getattr(message, name) for name in message.__struct_fields__}


class ItemV1Patch(Command, frozen=True):
    type_name = "shop.Item"
    type_version = "1.3.0"
    sku: str


def test_two_handlers_for_one_major_are_refused() -> None:
    shop, _ = two_majors()

    async def again(item: ItemV1Patch) -> None: ...

    with pytest.raises(ConfigurationError, match=r"both handle 'shop.Item' version 1\.x"):
        shop.command(again)


# -- upcasters: a v2-only service reads v1 during a rolling upgrade


async def test_a_v2_only_service_reads_v1_through_an_upcaster() -> None:
    seen: list[ItemV2] = []
    shop = Service("shop")
    shop.upcaster("shop.Item", "1.0.0", "2.0.0")(euros_to_cents)

    @shop.command
    async def take(item: ItemV2) -> None:
        seen.append(item)

    async with TestSystem(shop) as system:
        await send(system, "shop", ItemV1(sku="tea", price=12.5), ItemV2(sku="jam", cents=300))
        assert system.dead_letters("shop") == []
    assert seen == [ItemV2(sku="tea", cents=1250), ItemV2(sku="jam", cents=300)]


async def test_a_typed_upcaster_from_the_old_class_to_the_new() -> None:
    seen: list[ItemV2] = []
    shop = Service("shop")

    @shop.upcaster
    def item_v2(old: ItemV1) -> ItemV2:
        return ItemV2(sku=old.sku, cents=round(old.price * 100))

    @shop.command
    async def take(item: ItemV2) -> None:
        seen.append(item)

    async with TestSystem(shop) as system:
        await send(system, "shop", ItemV1(sku="tea", price=0.5))
    assert seen == [ItemV2(sku="tea", cents=50)]
    assert item_v2(ItemV1(sku="x", price=1.0)) == ItemV2(sku="x", cents=100)  # still callable


async def test_a_chain_climbs_two_majors_and_stops_at_the_first_handled_one() -> None:
    seen: list[object] = []
    shop = Service("shop")
    shop.upcaster("shop.Item", "1.0.0", "2.0.0")(euros_to_cents)
    shop.upcaster("shop.Item", "2.0.0", "3.0.0")(add_currency)

    @shop.command
    async def take(item: ItemV3 | Other) -> None:
        seen.append(item)

    async with TestSystem(shop) as system:
        await send(system, "shop", ItemV1(sku="a", price=1.0), ItemV2(sku="b", cents=2))
    assert seen == [
        ItemV3(sku="a", cents=100, currency="EUR"),
        ItemV3(sku="b", cents=2, currency="EUR"),
    ]


async def test_no_upcaster_for_that_major_dead_letters_and_names_the_gap() -> None:
    shop = Service("shop")
    shop.upcaster("shop.Item", "2.0.0", "3.0.0")(add_currency)

    @shop.command
    async def take(item: ItemV3) -> None: ...

    async with TestSystem(shop) as system:
        await send(system, "shop", ItemV1(sku="a", price=1.0))
        [dead] = system.dead_letters("shop")
    assert dead.headers["seawall-dlq-reason"] == "unknown-version"
    error = dead.headers["seawall-dlq-error"]
    assert "takes only ItemV3 (3.0.0)" in error
    assert "no upcaster leads from version 1.2.0 of 'shop.Item' to major version 3" in error


async def test_an_upcaster_that_fails_dead_letters_the_message_as_undecodable() -> None:
    shop = Service("shop")

    @shop.upcaster("shop.Item", "1.0.0", "2.0.0")
    def broken(fields: dict[str, Any]) -> dict[str, Any]:
        return {"sku": fields["no such field"]}

    @shop.command
    async def take(item: ItemV2) -> None: ...

    async with TestSystem(shop) as system:
        await send(system, "shop", ItemV1(sku="a", price=1.0))
        [dead] = system.dead_letters("shop")
        assert system.system.healthy  # the worker survived the user's KeyError
    assert dead.headers["seawall-dlq-reason"] == "decode-error"
    assert "upcaster to ItemV2 (test_an_upcaster_that" in dead.headers["seawall-dlq-error"]
    assert "KeyError" in dead.headers["seawall-dlq-error"]


def test_two_services_with_clashing_upcasters_are_refused_in_one_process() -> None:
    first, second = Service("first"), Service("second")
    first.upcaster("shop.Item", "1.0.0", "2.0.0")(euros_to_cents)
    second.upcaster("shop.Item", "1.0.0", "2.0.0")(lambda fields: fields)
    with pytest.raises(ConfigurationError, match=r"already has an upcaster from version 1\.0\.0"):
        System(first, second)


def test_a_chain_shared_by_two_services_is_no_clash() -> None:
    chain = Upcasters()
    chain.upcaster("shop.Item", "1.0.0", "2.0.0")(euros_to_cents)
    System(Service("first", upcasters=chain), Service("second", upcasters=chain))


# -- replies: request(returns=...) and gather read in the version they name


class ReceiptV1(Document, frozen=True):
    type_name = "shop.Receipt"
    total: float


class Receipt(Document, frozen=True):
    type_name = "shop.Receipt"
    type_version = "2.0.0"
    cents: int


def till(answer: Document) -> Service:
    """A service still on some version of the receipt."""
    service = Service("till")

    @service.command
    async def ring(item: Other) -> Document:
        return answer

    return service


async def test_a_reply_in_another_major_is_not_misread_as_the_type_asked_for() -> None:
    async with TestSystem(till(ReceiptV1(total=9.5))) as system:
        with pytest.raises(UnexpectedReply, match=r"arrived in version 1\.0\.0") as caught:
            await system.context().request("till", Other(n=1), returns=Receipt)
    assert "takes only Receipt (2.0.0)" in str(caught.value)


async def test_a_reply_in_an_older_major_is_upcast_for_the_requester() -> None:
    caller = Service("caller")

    @caller.upcaster
    def receipt_v2(old: ReceiptV1) -> Receipt:
        return Receipt(cents=round(old.total * 100))

    async with TestSystem(till(ReceiptV1(total=9.5)), caller) as system:
        receipt = await system.context().request("till", Other(n=1), returns=Receipt)
    assert receipt == Receipt(cents=950)


async def test_gather_skips_a_reply_it_cannot_read_and_keeps_the_others() -> None:
    def responder(name: str, answer: Document) -> Service:
        service = Service(name)

        @service.subscribe("asks")
        async def answer_it(ask: Other) -> Document:
            return answer

        return service

    old, new = responder("old", ReceiptV1(total=1.0)), responder("new", Receipt(cents=200))
    async with TestSystem(old, new) as system:
        receipts = await system.context().gather(
            "asks", Other(n=1), returns=Receipt, timeout=1.0, count=2
        )
    assert receipts == [Receipt(cents=200)]


# -- the test system's helpers read by major as well


async def test_sent_and_messages_match_the_major_of_the_class_asked_for() -> None:
    shop, _ = two_majors()
    async with TestSystem(shop) as system:
        await send(system, "shop", ItemV1(sku="a", price=1.0), ItemV2(sku="b", cents=2))
        assert system.sent(ItemV2) == [ItemV2(sku="b", cents=2)]
        assert system.sent(ItemV1) == [ItemV1(sku="a", price=1.0)]
        assert [m.dataschema for m in system.messages("shop", ItemV1)] == [
            "urn:seawall:shop.Item:1.2.0"
        ]


# -- one chain for the event store and the service: events relayed from an old log


class Deposited(Event, frozen=True):
    type_name = "bank.Deposited"
    euros: int


class DepositedV2(Event, frozen=True):
    type_name = "bank.Deposited"
    type_version = "2.0.0"
    cents: int


async def test_the_event_codec_and_a_service_share_one_upcaster_chain(tmp_path: Path) -> None:
    codec = EventCodec(DepositedV2)

    @codec.upcaster("bank.Deposited", "1.0.0", "2.0.0")
    def to_cents(fields: dict[str, Any]) -> dict[str, Any]:
        return {"cents": fields["euros"] * 100}

    seen: list[DepositedV2] = []
    ledger = Service("ledger", upcasters=codec.upcasters)

    @ledger.subscribe("bank.events")
    async def on_deposit(event: DepositedV2) -> None:
        seen.append(event)

    async with await SQLiteEventStore.open(tmp_path / "bank.db") as store:
        old = EventCodec(Deposited).encode(Deposited(euros=7))  # stored before the upgrade
        await store.append("acct-1", [old], 0)
        [stored] = await store.read_stream("acct-1")
        assert codec.decode(stored) == DepositedV2(cents=700)  # the store reads it so
        async with TestSystem(ledger) as system:
            relay = OutboxRelay(store, system.transport, channel="bank.events", source="bank")
            assert await relay.drain() == 1  # published as stored: version 1.0.0
            await system.settle()
    assert seen == [DepositedV2(cents=700)]  # and the service reads it so too
