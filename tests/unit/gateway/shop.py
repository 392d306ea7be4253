"""A small system behind a gateway, for the gateway tests: orders, consumers, restaurants.

Latency is injected per test (``Latency``), the slow service works one message
at a time until released, and the ``fragile`` channel sits behind a send
middleware that refuses with ``CircuitOpen`` before anything is published.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any, ClassVar

from seawall import (
    CircuitOpen,
    Command,
    Context,
    Document,
    Event,
    MemoryTransport,
    Message,
    Middleware,
    NextSend,
    Outgoing,
    RetryPolicy,
    Service,
    System,
)
from seawall.gateway import Expand, Gateway


class GetOrder(Command, frozen=True):
    type_name: ClassVar[str] = "orders.GetOrder"
    order_id: str


class PlaceOrder(Command, frozen=True):
    type_name: ClassVar[str] = "orders.PlaceOrder"
    order_id: str
    consumer_id: str
    restaurant_id: str
    items: list[str]
    note: str = ""


class OrderView(Document, frozen=True):
    type_name: ClassVar[str] = "orders.OrderView"
    order_id: str
    consumer_id: str
    restaurant_id: str
    items: list[str]


class OrderPlaced(Event, frozen=True):
    type_name: ClassVar[str] = "orders.OrderPlaced"
    order_id: str
    step: int


class GetConsumer(Command, frozen=True):
    type_name: ClassVar[str] = "consumers.GetConsumer"
    consumer_id: str


class ConsumerView(Document, frozen=True):
    type_name: ClassVar[str] = "consumers.ConsumerView"
    consumer_id: str
    name: str


class GetRestaurant(Command, frozen=True):
    type_name: ClassVar[str] = "restaurants.GetRestaurant"
    restaurant_id: str


class RestaurantView(Document, frozen=True):
    type_name: ClassVar[str] = "restaurants.RestaurantView"
    restaurant_id: str
    name: str


class Work(Command, frozen=True):
    type_name: ClassVar[str] = "slow.Work"
    n: int


class Worked(Document, frozen=True):
    type_name: ClassVar[str] = "slow.Worked"
    n: int


class Add(Command, frozen=True):
    type_name: ClassVar[str] = "calc.Add"
    a: int
    b: int = 0
    tag: str = ""


class Sum(Document, frozen=True):
    type_name: ClassVar[str] = "calc.Sum"
    total: int


@dataclass
class World:
    """What the services did, for the tests to look at; latency to inject."""

    latency: float = 0.0
    orders: dict[str, OrderView] = field(default_factory=dict)
    worked: list[int] = field(default_factory=list)
    release: asyncio.Event = field(default_factory=asyncio.Event)
    holding: asyncio.Event = field(default_factory=asyncio.Event)
    in_flight: int = 0
    most_in_flight: int = 0
    reads: int = 0


def services(world: World) -> list[Service]:
    orders = Service("orders", retry=RetryPolicy(max_attempts=1))
    consumers = Service("consumers")
    restaurants = Service("restaurants")
    slow = Service("slow", concurrency=1)
    calc = Service("calc")

    @orders.command
    async def get_order(cmd: GetOrder | PlaceOrder, ctx: Context) -> OrderView | None:
        if isinstance(cmd, PlaceOrder):
            view = OrderView(
                order_id=cmd.order_id,
                consumer_id=cmd.consumer_id,
                restaurant_id=cmd.restaurant_id,
                items=cmd.items,
            )
            world.orders[cmd.order_id] = view
            for step in range(1, 4):
                await ctx.publish(OrderPlaced(order_id=cmd.order_id, step=step), key=cmd.order_id)
            return None
        world.reads += 1
        return world.orders[cmd.order_id]  # KeyError: the gateway maps it to 404

    async def slowly() -> None:
        world.in_flight += 1
        world.most_in_flight = max(world.most_in_flight, world.in_flight)
        try:
            await asyncio.sleep(world.latency)
        finally:
            world.in_flight -= 1

    @consumers.command
    async def get_consumer(cmd: GetConsumer) -> ConsumerView:
        await slowly()
        return ConsumerView(consumer_id=cmd.consumer_id, name=f"consumer {cmd.consumer_id}")

    @restaurants.command
    async def get_restaurant(cmd: GetRestaurant) -> RestaurantView:
        await slowly()
        return RestaurantView(restaurant_id=cmd.restaurant_id, name="Ajanta")

    @slow.command
    async def work(cmd: Work) -> Worked:
        if cmd.n == 0:
            world.holding.set()
            await world.release.wait()
        world.worked.append(cmd.n)
        return Worked(n=cmd.n)

    @calc.command
    async def add(cmd: Add) -> Sum:
        return Sum(total=cmd.a + cmd.b)

    return [orders, consumers, restaurants, slow, calc]


class Breaker(Middleware):
    """Stands in for an open circuit breaker: refuses sends to ``fragile`` before publishing."""

    def send(self, out: Outgoing, call_next: NextSend) -> Any:
        if out.channel == "fragile":
            raise CircuitOpen("fragile", retry_after=2.2)
        return call_next(out)


class CountingTransport(MemoryTransport):
    """The real memory transport, counting what is published per channel."""

    def __init__(self) -> None:
        super().__init__()
        self.published: dict[str, int] = {}

    async def publish(
        self, channel: str, message: Message, *, not_before: float | None = None, priority: int = 0
    ) -> None:
        self.published[channel] = self.published.get(channel, 0) + 1
        await super().publish(channel, message, not_before=not_before, priority=priority)


def make_system(world: World) -> System:
    return System(*services(world), transport=CountingTransport(), middleware=[Breaker()])


def routes(gateway: Gateway) -> Gateway:
    """The test routes, on a gateway with whatever edge settings a test gives it."""
    gateway.command(
        "POST",
        "/orders",
        channel="orders",
        payload=PlaceOrder,
        location="/orders/{order_id}",
        key="order_id",
    )
    gateway.query(
        "/orders/{order_id}",
        channel="orders",
        payload=GetOrder,
        returns=OrderView,
        errors={"KeyError": 404},
        expand={
            "consumer": Expand(
                channel="consumers",
                build=lambda o, _: GetConsumer(consumer_id=o.consumer_id),
                returns=ConsumerView,
            ),
            "restaurant": Expand(
                channel="restaurants",
                build=lambda o, _: GetRestaurant(restaurant_id=o.restaurant_id),
                returns=RestaurantView,
            ),
        },
        cache=60.0,
    )
    gateway.events(
        "/orders/{order_id}/events", channel="orders.events", types=(OrderPlaced,), key="order_id"
    )
    gateway.request("POST", "/work", channel="slow", payload=Work, returns=Worked, timeout=30.0)
    gateway.request("POST", "/fragile", channel="fragile", payload=Work, returns=Worked)
    gateway.request("GET", "/add/{a}", channel="calc", payload=Add, returns=Sum)
    gateway.request("POST", "/add", channel="calc", payload=Add, returns=Sum, scopes=["calc"])
    gateway.cloudevents("/events", channel="orders.events", types=(OrderPlaced,))
    return gateway
