"""A small shop: nine services in one process over the memory transport.

The in-process companion of the FTGO demo (``make demo`` runs ``examples.ftgo``).

All five interaction styles of seawall are on the path of an order::

    storefront ──request──────────────▶ shop                       request/response
    shop ──request, awaited later────▶ warehouse (flaky, retried)  async request/response
    shop ──request───────────────────▶ payments                   request/response
    shop ──send──────────────────────▶ notifier                   one-way notification
    shop ──publish OrderPlaced───────▶ shipping, analytics        publish/subscribe
    shipping ──gather QuoteDelivery──▶ courier-bike/-van/-drone   publish/async responses
    shipping ──send AssignDelivery───▶ the cheapest courier       one-way notification

Two malformed messages are slipped onto the payments channel on the side; they
end up in ``payments.dlq`` and the orders flow on. Run ``python -m examples.shop``;
``SEAWALL_DEMO_ORDERS`` sets the number of orders (300 by default).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
import time
import zlib
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Literal

from rich.console import Console
from rich.logging import RichHandler
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn
from rich.table import Column, Table

from seawall import (
    Command,
    Context,
    Document,
    Event,
    MemoryTransport,
    Message,
    RequestError,
    RetryPolicy,
    Service,
    Stats,
    Subscription,
    System,
    dead_letter_channel,
    uuid7,
)

CONCURRENCY = 20
"""Orders in flight at once."""
QUOTE_WINDOW = 0.2
"""Seconds shipping waits for courier quotes."""
DECLINED_CARD = "4000-0000-0000-0002"
ITEMS = ("ramen", "dumplings", "pho", "tacos", "falafel", "curry", "pizza")


# -- messages -------------------------------------------------------------------------------


class PlaceOrder(Command, frozen=True):
    order_id: str
    item: str
    cents: int
    card: str


class OrderOutcome(Document, frozen=True):
    order_id: str
    status: Literal["approved", "declined"]


class ReserveStock(Command, frozen=True):
    order_id: str
    item: str


class StockReserved(Document, frozen=True):
    order_id: str
    shelf: str


class ReleaseStock(Command, frozen=True):
    order_id: str


class Authorize(Command, frozen=True):
    order_id: str
    cents: int
    card: str


class Authorization(Document, frozen=True):
    order_id: str
    approved: bool


class Notify(Command, frozen=True):
    order_id: str
    text: str


class OrderPlaced(Event, frozen=True):
    order_id: str
    cents: int


class QuoteDelivery(Command, frozen=True):
    order_id: str


class DeliveryQuote(Document, frozen=True):
    courier: str
    cents: int


class AssignDelivery(Command, frozen=True):
    order_id: str


# -- services -------------------------------------------------------------------------------


@dataclass
class Books:
    """Each service's own state, one field per owner; the demo reads it only at the end."""

    reserve_attempts: Counter[str] = field(default_factory=Counter)  # warehouse
    released: set[str] = field(default_factory=set)  # warehouse
    authorizations: int = 0  # payments
    notified: Counter[str] = field(default_factory=Counter)  # notifier
    quotes_per_gather: list[int] = field(default_factory=list)  # shipping
    revenue: dict[str, int] = field(default_factory=dict)  # analytics
    deliveries: defaultdict[str, list[str]] = field(  # couriers
        default_factory=lambda: defaultdict(list)
    )


def outages(order_id: str) -> int:
    """How often the warehouse's database link drops while reserving this order (0-2)."""
    bucket = zlib.crc32(order_id.encode()) % 8
    return 2 if bucket == 0 else 1 if bucket == 1 else 0


def shop_service() -> Service:
    shop = Service("shop")

    @shop.command
    async def place_order(cmd: PlaceOrder, ctx: Context) -> OrderOutcome:
        # asynchronous request/response: the reservation is on its way while we ask payments
        stock = ctx.request("warehouse", ReserveStock(order_id=cmd.order_id, item=cmd.item))
        authorize = Authorize(order_id=cmd.order_id, cents=cmd.cents, card=cmd.card)
        auth = await ctx.request("payments", authorize, returns=Authorization)
        await stock
        if not auth.approved:
            await ctx.send("warehouse", ReleaseStock(order_id=cmd.order_id))
            await ctx.send("notifier", Notify(order_id=cmd.order_id, text="payment declined"))
            return OrderOutcome(order_id=cmd.order_id, status="declined")
        await ctx.publish(OrderPlaced(order_id=cmd.order_id, cents=cmd.cents), key=cmd.order_id)
        await ctx.send("notifier", Notify(order_id=cmd.order_id, text="order confirmed"))
        return OrderOutcome(order_id=cmd.order_id, status="approved")

    return shop


def warehouse_service(books: Books) -> Service:
    # a flaky database link: retry soon and a few times before giving up
    policy = RetryPolicy(max_attempts=4, initial_backoff=0.005, max_backoff=0.05)
    warehouse = Service("warehouse", retry=policy)

    @warehouse.command
    async def reserve(cmd: ReserveStock) -> StockReserved:
        books.reserve_attempts[cmd.order_id] += 1
        if books.reserve_attempts[cmd.order_id] <= outages(cmd.order_id):
            raise ConnectionError(f"stock database unreachable reserving {cmd.order_id}")
        return StockReserved(order_id=cmd.order_id, shelf=f"A{len(cmd.item):02d}")

    @warehouse.command
    async def release(cmd: ReleaseStock) -> None:
        books.released.add(cmd.order_id)

    return warehouse


def payments_service(books: Books) -> Service:
    payments = Service("payments")

    @payments.command
    async def authorize(cmd: Authorize) -> Authorization:
        await asyncio.sleep(0.001)  # the card network
        books.authorizations += 1
        return Authorization(order_id=cmd.order_id, approved=cmd.card != DECLINED_CARD)

    return payments


def notifier_service(books: Books) -> Service:
    notifier = Service("notifier")

    @notifier.command
    async def notify(cmd: Notify) -> None:
        books.notified[cmd.order_id] += 1

    return notifier


def shipping_service(books: Books) -> Service:
    shipping = Service("shipping")

    @shipping.subscribe("shop.events", group="shipping")
    async def ship(event: OrderPlaced, ctx: Context) -> None:
        ask = QuoteDelivery(order_id=event.order_id)
        quotes = await ctx.gather(
            "delivery.quotes", ask, returns=DeliveryQuote, timeout=QUOTE_WINDOW, count=3
        )
        books.quotes_per_gather.append(len(quotes))
        if not quotes:  # raising means: try again later
            raise LookupError(f"no courier quoted for {event.order_id} in {QUOTE_WINDOW} s")
        best = min(quotes, key=lambda quote: quote.cents)
        await ctx.send(best.courier, AssignDelivery(order_id=event.order_id))

    return shipping


def analytics_service(books: Books) -> Service:
    analytics = Service("analytics")

    @analytics.subscribe("shop.events", group="analytics")
    async def count_sale(event: OrderPlaced) -> None:
        books.revenue[event.order_id] = event.cents

    return analytics


def courier_service(name: str, base_cents: int, books: Books, *, rural: bool = False) -> Service:
    courier = Service(name)

    # group = the courier's name, so every courier sees every request for a quote
    @courier.subscribe("delivery.quotes", group=name)
    async def quote(ask: QuoteDelivery) -> DeliveryQuote | None:
        spread = zlib.crc32(f"{name}/{ask.order_id}".encode()) % 300
        if rural and spread % 3 == 0:
            return None  # out of range: stays silent, shipping's gather runs to its deadline
        await asyncio.sleep(spread / 100_000)  # up to 3 ms of thinking
        return DeliveryQuote(courier=name, cents=base_cents + spread)

    @courier.command
    async def assign(cmd: AssignDelivery) -> None:
        books.deliveries[cmd.order_id].append(name)

    return courier


def services(books: Books) -> list[Service]:
    """The whole shop."""
    return [
        shop_service(),
        warehouse_service(books),
        payments_service(books),
        notifier_service(books),
        shipping_service(books),
        analytics_service(books),
        courier_service("courier-bike", 450, books),
        courier_service("courier-van", 500, books),
        courier_service("courier-drone", 300, books, rural=True),
    ]


# -- the run --------------------------------------------------------------------------------


def order(n: int) -> PlaceOrder:
    """Order number ``n``; every tenth pays with a card that is declined."""
    card = DECLINED_CARD if n % 10 == 7 else "4242-4242-4242-4242"
    return PlaceOrder(
        order_id=f"o-{n:04d}", item=ITEMS[n % len(ITEMS)], cents=800 + n * 37 % 2000, card=card
    )


def poison() -> list[Message]:
    """Messages no attempt can handle: a truncated body, and a type payments does not know."""
    bodies = {"Authorize": b'{"order_id": "o-9999", "cents": ', "RefundEverything": b"{}"}
    return [
        Message(id=uuid7(), type=name, source="saboteur", kind="command", data=body)
        for name, body in bodies.items()
    ]


@dataclass
class Summary:
    """What a run did; it fills in while the orders run and the system settles."""

    orders: int
    poison: int
    """Poison messages injected."""
    books: Books
    dead_letters: list[Message]
    stats: dict[str, Stats] = field(default_factory=dict)
    outcomes: dict[str, str] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def approved(self) -> set[str]:
        return {oid for oid, status in self.outcomes.items() if status == "approved"}

    @property
    def declined(self) -> set[str]:
        return {oid for oid, status in self.outcomes.items() if status == "declined"}

    @property
    def retries(self) -> int:
        return sum(stats.retried for stats in self.stats.values())

    @property
    def dead_lettered(self) -> int:
        """Dead letters sent by every service, not only those read back from payments.dlq."""
        return sum(stats.dead_lettered for stats in self.stats.values())

    def per_service(self) -> dict[str, Counter[str]]:
        """Dispatcher counters added up by service (a service has one per subscription)."""
        totals: defaultdict[str, Counter[str]] = defaultdict(Counter)
        for name, stats in self.stats.items():
            service = name.split(":", 1)[0]
            totals[service].update(
                handled=stats.handled, retried=stats.retried, dead=stats.dead_lettered
            )
        return dict(sorted(totals.items()))

    def latency(self, quantile: float) -> float:
        """Order latency at ``quantile`` (nearest rank), in seconds."""
        ordered = sorted(self.latencies) or [0.0]
        return ordered[min(len(ordered) - 1, int(quantile * len(ordered)))]

    def settled(self) -> bool:
        """Whether every follow-up of the orders and of the poison has been handled."""
        approved = len(self.approved)
        return (
            len(self.dead_letters) >= self.poison
            and sum(self.books.notified.values()) >= len(self.outcomes)
            and len(self.books.revenue) >= approved
            and sum(map(len, self.books.deliveries.values())) >= approved
        )

    def problems(self) -> list[str]:
        """Broken invariants, in words; empty when the run kept every promise."""
        found = []
        if len(self.outcomes) != self.orders or self.errors:
            lost = self.orders - len(self.outcomes)
            found.append(
                f"{lost} of {self.orders} orders reached no final state: {self.errors[:3]}"
            )
        if not len(self.dead_letters) == self.dead_lettered == self.poison:
            found.append(
                f"{self.dead_lettered} dead letters ({len(self.dead_letters)} read from "
                f"payments.dlq) for {self.poison} poison messages"
            )
        couriers = self.books.deliveries
        wrong = sorted(
            oid
            for oid in self.approved | couriers.keys()
            if len(couriers.get(oid, [])) != (oid in self.approved)
        )
        if wrong:
            found.append(
                f"{len(wrong)} orders with a wrong courier count (approved: exactly one; "
                f"others: none), e.g. {[(oid, couriers.get(oid, [])) for oid in wrong[:3]]}"
            )
        if sorted(self.books.notified.values()) != [1] * len(self.outcomes):
            found.append(f"customers not notified exactly once: {self.books.notified}")
        if self.books.revenue.keys() != self.approved:
            found.append("analytics did not count exactly the approved orders")
        return found


async def drive(ctx: Context, summary: Summary, concurrency: int, tick: Callable[[], None]) -> None:
    """Place the summary's orders, ``concurrency`` at a time, and note how each ended."""
    numbers = iter(range(summary.orders))  # shared: each order is taken by exactly one worker

    async def worker() -> None:
        for n in numbers:
            placed, start = order(n), time.perf_counter()
            try:
                outcome = await ctx.request("shop", placed, returns=OrderOutcome, timeout=5.0)
            except RequestError as exc:
                summary.errors.append(f"{placed.order_id}: {exc}")
            else:
                summary.outcomes[outcome.order_id] = outcome.status
                summary.latencies.append(time.perf_counter() - start)
            tick()

    start = time.perf_counter()
    async with asyncio.TaskGroup() as tasks:
        for _ in range(min(concurrency, summary.orders)):
            tasks.create_task(worker())
    summary.seconds = time.perf_counter() - start


async def collect(sub: Subscription, into: list[Message]) -> None:
    """Read a channel as one more consumer group (here: the dead letters of payments)."""
    try:
        async for delivery in sub:
            into.append(delivery.message)
            await sub.ack(delivery)
    finally:
        await sub.close()


async def settle(done: Callable[[], bool], timeout: float) -> None:
    """Give the asynchronous follow-ups (events, notifications) time to arrive."""
    for _ in range(int(timeout / 0.01)):
        if done():
            return
        await asyncio.sleep(0.01)


@contextlib.contextmanager
def progress(total: int, console: Console) -> Iterator[Callable[[], None]]:
    """A callback to count one finished order: a live bar on a terminal, else a line per 10 %."""
    if console.is_terminal:
        columns = (*Progress.get_default_columns()[:1], BarColumn(), MofNCompleteColumn())
        with Progress(*columns, TimeElapsedColumn(), console=console) as bar:
            task = bar.add_task("orders", total=total)
            yield lambda: bar.advance(task)
        return
    done = 0
    step = max(1, total // 10)

    def tick() -> None:
        nonlocal done
        done += 1
        if done % step == 0 or done == total:
            console.print(f"  {done}/{total} orders done")

    yield tick


async def main(
    orders: int = 300, *, concurrency: int = CONCURRENCY, console: Console | None = None
) -> Summary:
    """Run the shop for ``orders`` orders, print the summary and return it."""
    console = console or Console()
    console.print(
        f"seawall demo: {orders} orders ({concurrency} at a time), 9 services, one process"
    )
    books, injected = Books(), poison()
    summary = Summary(orders=orders, poison=len(injected), books=books, dead_letters=[])
    transport = MemoryTransport()
    async with System(*services(books), transport=transport, grace=2.0) as system:
        dlq = await transport.subscribe(dead_letter_channel("payments"), group="demo")
        async with asyncio.TaskGroup() as tasks:
            reader = tasks.create_task(collect(dlq, summary.dead_letters))
            for message in injected:  # published raw, as a buggy producer elsewhere might
                await transport.publish("payments", message)
            with progress(orders, console) as tick:
                await drive(system.context("storefront"), summary, concurrency, tick)
            await settle(summary.settled, timeout=5.0)
            reader.cancel()
        summary.stats = system.stats()
    report(summary, console)
    return summary


# -- the report -----------------------------------------------------------------------------


def report(summary: Summary, console: Console) -> None:
    """Print the summary tables and the invariant checks."""
    for table in (orders_table, styles_table, services_table, dead_letters_table):
        console.print(table(summary))
    problems = summary.problems()
    for problem in problems:
        console.print(f"[bold red]FAILED[/]: {problem}")
    if not problems:
        console.print(
            "[bold green]ok[/]: every order final, poison dead-lettered, one courier each"
        )


def orders_table(summary: Summary) -> Table:
    table = Table(title="orders", show_header=False)
    p50, p99 = summary.latency(0.5) * 1e3, summary.latency(0.99) * 1e3
    table.add_row(
        "placed / approved / declined",
        f"{summary.orders} / {len(summary.approved)} / {len(summary.declined)}",
    )
    table.add_row("failed requests", str(len(summary.errors)))
    table.add_row("retries / dead letters", f"{summary.retries} / {summary.dead_lettered}")
    table.add_row("throughput", f"{summary.orders / max(summary.seconds, 1e-9):,.0f} orders/s")
    table.add_row("latency p50 / p99", f"{p50:.1f} / {p99:.1f} ms")
    table.add_row("revenue (analytics)", f"${sum(summary.books.revenue.values()) / 100:,.2f}")
    return table


def styles_table(summary: Summary) -> Table:
    books, gathers = summary.books, summary.books.quotes_per_gather
    one_way = [sum(books.notified.values()), len(books.released)]
    one_way.append(sum(map(len, books.deliveries.values())))
    late = sum(1 for quotes in gathers if quotes < 3)
    table = Table("interaction style", "who -> whom: what", "messages", title="interaction styles")
    table.add_row("request/response", "shop -> payments: Authorize", str(books.authorizations))
    table.add_row(
        "async request/response",
        "shop -> warehouse: ReserveStock, awaited after the payment",
        str(len(books.reserve_attempts)),
    )
    table.add_row(
        "one-way notification",
        "shop -> notifier: Notify; shop -> warehouse: ReleaseStock; "
        "shipping -> courier: AssignDelivery",
        str(sum(one_way)),
    )
    table.add_row(
        "publish/subscribe",
        "shop -> shop.events: OrderPlaced, to groups shipping and analytics",
        str(len(summary.approved)),
    )
    table.add_row(
        "publish/async responses",
        f"shipping -> delivery.quotes: QuoteDelivery, {sum(gathers)} quotes back; "
        f"{late} gathers ran to the deadline, the others stopped at 3 quotes",
        str(len(gathers)),
    )
    return table


def services_table(summary: Summary) -> Table:
    table = Table("service", "handled", "retried", "dead-lettered", title="messages per service")
    for name, counts in summary.per_service().items():
        table.add_row(name, *(str(counts[c]) for c in ("handled", "retried", "dead")))
    return table


def dead_letters_table(summary: Summary) -> Table:
    error = Column("error", overflow="fold")
    table = Table("type", "reason", "attempts", error, title="dead letters read from payments.dlq")
    for message in summary.dead_letters:
        headers = message.headers
        table.add_row(
            message.type,
            *(headers.get(f"seawall-dlq-{name}", "?") for name in ("reason", "attempt", "error")),
        )
    return table


def configure_logging(console: Console) -> None:
    """Show seawall's warnings (dead letters, expiries) as one line each; retries are counted."""
    handler: logging.Handler
    if console.is_terminal:
        handler = RichHandler(console=console, show_time=False, show_path=False)
        handler.setFormatter(logging.Formatter("%(name)s: %(message)s"))
    else:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=logging.WARNING, handlers=[handler])


def cli() -> None:
    """``python -m examples.shop``: run the demo and exit 1 if an invariant broke."""
    console = Console()
    configure_logging(console)
    text = os.environ.get("SEAWALL_DEMO_ORDERS", "300")
    if not text.isdigit() or int(text) < 1:
        raise SystemExit(f"SEAWALL_DEMO_ORDERS must be a positive whole number, got {text!r}")
    summary = asyncio.run(main(int(text), console=console))
    if summary.problems():
        console.print("demo failed: the invariants above do not hold")
        raise SystemExit(1)


if __name__ == "__main__":
    cli()
