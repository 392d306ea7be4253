"""Delivery service and the couriers.

Delivery subscribes to approved orders (publish/subscribe), asks every
courier for an offer and takes the best that arrives within the deadline
(publish/async responses, ``ctx.gather``), records the choice once, and tells
the chosen courier (one-way notification). A courier is a service of its own
per instance (``courier-1``, ``courier-2``: the ``SEAWALL_UP_INSTANCE`` number),
so each one hears every request for an offer.
"""

from __future__ import annotations

import os
import zlib

from seawall import Context, Service

from .messages import AssignCourier, CourierOffer, OrderApproved, RequestOffer
from .names import channel
from .store import Store

OFFER_WINDOW = 0.5
"""Seconds Delivery waits for offers."""

SCHEMA = """
CREATE TABLE IF NOT EXISTS assignments (order_id TEXT PRIMARY KEY, courier TEXT NOT NULL);
"""
COURIER_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (order_id TEXT NOT NULL, courier TEXT NOT NULL,
                                 PRIMARY KEY (order_id, courier));
"""


class NoOffer(Exception):
    """No courier answered in time; the event is tried again later."""


def service() -> Service:
    delivery = Service(channel("delivery"))
    store = Store("delivery", SCHEMA)

    @delivery.subscribe(channel("order.events"), group=channel("delivery"))
    async def on_approved(event: OrderApproved, ctx: Context) -> None:
        row = store.one("SELECT courier FROM assignments WHERE order_id = ?", event.order_id)
        if row is None:
            ask = RequestOffer(order_id=event.order_id, restaurant_id=event.restaurant_id)
            offers = await ctx.gather(
                channel("delivery.offers"),
                ask,
                returns=CourierOffer,
                timeout=OFFER_WINDOW,
                count=2,
            )
            if not offers:
                raise NoOffer(f"no courier offered to deliver {event.order_id}")
            best = min(offers, key=lambda offer: (offer.minutes, offer.courier))
            store.run(
                "INSERT OR IGNORE INTO assignments VALUES (?, ?)", event.order_id, best.courier
            )
            row = store.one("SELECT courier FROM assignments WHERE order_id = ?", event.order_id)
            assert row is not None
        await ctx.send(channel(row[0]), AssignCourier(order_id=event.order_id))

    return delivery


def courier() -> Service:
    number = os.environ.get("SEAWALL_UP_INSTANCE", "courier-1").rsplit("-", 1)[-1]
    name = f"courier-{number}"
    courier = Service(channel(name), expired="drop")  # an offer after the window is worthless
    store = Store(name, COURIER_SCHEMA)

    @courier.subscribe(channel("delivery.offers"), group=channel(name))
    async def offer(ask: RequestOffer) -> CourierOffer:
        minutes = 10 + zlib.crc32(f"{name}/{ask.order_id}".encode()) % 30
        return CourierOffer(courier=name, minutes=minutes)

    @courier.command
    async def assign(cmd: AssignCourier) -> None:
        store.run("INSERT OR IGNORE INTO jobs VALUES (?, ?)", cmd.order_id, name)

    return courier
