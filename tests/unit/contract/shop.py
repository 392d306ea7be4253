"""A small system for the contract tests: a command with a reply, an event subscription."""

from __future__ import annotations

from typing import ClassVar

from seawall import Command, Context, Document, Event, Service, System


class Address(Document, frozen=True):
    type_name: ClassVar[str] = "shop.Address"
    street: str
    city: str


class PlaceOrder(Command, frozen=True):
    type_name: ClassVar[str] = "shop.PlaceOrder"
    type_version: ClassVar[str] = "1.2.0"
    order_id: str
    items: list[str]
    ship_to: Address
    note: str = ""


class OrderPlaced(Document, frozen=True):
    type_name: ClassVar[str] = "shop.OrderPlaced"
    order_id: str
    total: int


class Paid(Event, frozen=True):
    type_name: ClassVar[str] = "billing.Paid"
    order_id: str
    cents: int


shop = Service("shop")


@shop.command
async def place(cmd: PlaceOrder, ctx: Context) -> OrderPlaced:
    return OrderPlaced(order_id=cmd.order_id, total=len(cmd.items))


@shop.subscribe("billing.events")
async def on_paid(event: Paid) -> None:
    return None


system = System(shop, transport="memory://")
