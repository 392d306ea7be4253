"""The FTGO storefront: the HTTP API in front of the FTGO services, on seawall.gateway.

Outside clients place orders and read what they need over HTTP; inside, each
request becomes a message to a service:

- ``POST /orders`` (``?expand=consumer``): the order saga, as a request to the
  Order service; the reply is the order's outcome, with the Consumer service's
  verdict on the consumer merged in when asked for (requested at the same time
  as any other expansion);
- ``GET /consumers/{consumer_id}?order_id=``: may this consumer order (cached 5 s);
- ``POST /restaurants/{restaurant_id}/menu``: revise a menu, a one-way command
  (``202 Accepted``);
- ``GET /orders/{order_id}/events``: the order's events as server-sent events;
- ``/openapi.json`` and ``/docs``.

Run it on its own beside the services (``seawall gateway
examples.ftgo.storefront:gateway --listen 127.0.0.1:8080 --transport URL``), as
a unit of ``seawall up`` (``listen = "127.0.0.1:8080"`` in its table), or in
the demo's driver process (:func:`opened`), which places every order through it.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import httpx
import msgspec

from seawall import System
from seawall.gateway import Expand, Gateway, serving

from . import names
from .messages import (
    ConsumerVerified,
    CreateOrder,
    OrderApproved,
    OrderOutcome,
    OrderRejected,
    ReviseMenu,
    ValidateConsumer,
)

__all__ = ["ORDER_TIMEOUT", "gateway", "make", "opened", "place"]

ORDER_TIMEOUT = 30.0
"""Seconds an order's saga may take, the default deadline of ``POST /orders``."""

LONGEST = 600.0
"""The longest deadline a caller may ask for in the ``x-request-timeout`` header."""


def _consumer_check(outcome: OrderOutcome, order: CreateOrder) -> ValidateConsumer:
    return ValidateConsumer(consumer_id=order.consumer_id, order_id=outcome.order_id)


def make(system: System | None = None, prefix: str | None = None) -> Gateway:
    """The storefront's routes, sending through ``system`` (default: the one it runs in).

    ``prefix``: the run's channel prefix (default: ``FTGO_PREFIX``, as the services read it).
    """

    def channel(name: str) -> str:
        return f"{names.prefix() if prefix is None else prefix}{name}"

    store = Gateway(
        title="FTGO storefront",
        version="1.0.0",
        description="Order food over HTTP; every request is a message to an FTGO service.",
        system=system,
        timeout=5.0,
        max_timeout=LONGEST,
    )
    consumer = Expand(channel=channel("consumer"), build=_consumer_check, returns=ConsumerVerified)
    store.request(
        "POST",
        "/orders",
        channel=channel("order"),
        payload=CreateOrder,
        returns=OrderOutcome,
        timeout=ORDER_TIMEOUT,
        # no key: a CreateOrder waits for its saga, whose ApproveOrder/RejectOrder come to
        # the same service; keyed alike, they would queue behind it in its key's lane
        expand={"consumer": consumer},
        summary="place an order: runs its saga, answers its outcome",
    )
    store.query(
        "/consumers/{consumer_id}",
        channel=channel("consumer"),
        payload=ValidateConsumer,
        returns=ConsumerVerified,
        cache=5.0,
        summary="may this consumer order?",
    )
    store.command(
        "POST",
        "/restaurants/{restaurant_id}/menu",
        channel=channel("restaurant"),
        payload=ReviseMenu,
        location="/restaurants/{restaurant_id}/menu",
        summary="revise a restaurant's menu",
    )
    store.events(
        "/orders/{order_id}/events",
        channel=channel("order.events"),
        types=(OrderApproved, OrderRejected),
        key="order_id",
        summary="the order's events as they happen",
    )
    return store


def gateway() -> Gateway:
    """The target ``seawall gateway`` and ``seawall up`` run: a client of their transport."""
    return make()


# -- the demo's driver places its orders through the storefront -----------------------------


@contextlib.asynccontextmanager
async def opened(system: System, prefix: str) -> AsyncIterator[httpx.AsyncClient]:
    """The storefront served on a free loopback port by ``system``'s process, and a client."""
    async with serving(make(system, prefix).app(system)) as url:
        # A pooled connection is dropped by the client (2 s) well before the server's idle
        # timeout (uvicorn's 5 s) ends it: with both at 5 s, a request sent on a connection
        # the server is closing that moment fails with a ReadError and is never seen.
        limits = httpx.Limits(
            max_connections=200, max_keepalive_connections=200, keepalive_expiry=2.0
        )
        # each order's own deadline bounds it (place's header): no client-side timeout
        async with httpx.AsyncClient(base_url=url, limits=limits, timeout=None) as http:
            yield http


class Refused(Exception):
    """The storefront answered an order with an error status."""


async def place(
    http: httpx.AsyncClient, order: CreateOrder, timeout: float = ORDER_TIMEOUT
) -> OrderOutcome:
    """``POST /orders?expand=consumer`` with a deadline of ``timeout`` seconds: the order's
    outcome, checked against the expansion."""
    response = await http.post(
        "/orders",
        params={"expand": "consumer"},
        json=msgspec.to_builtins(order),
        headers={"x-request-timeout": f"{timeout:g}"},
    )
    if response.status_code != 200:
        raise Refused(f"HTTP {response.status_code}: {response.text}")
    body: dict[str, Any] = response.json()
    verdict = msgspec.convert(body.pop("consumer"), ConsumerVerified)
    if verdict.consumer_id != order.consumer_id:
        raise Refused(f"the expansion names consumer {verdict.consumer_id}, not ours")
    return msgspec.convert(body, OrderOutcome)
