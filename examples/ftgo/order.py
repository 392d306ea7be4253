"""Order service: takes orders and runs each one as a saga with compensation.

    validate consumer -> create ticket -> authorize card -> approve ticket -> approved
                                          declined card -> cancel ticket -> rejected

The consumer check is an asynchronous request: it is sent first and awaited
after the order has been priced from the local menu replica (kept up to date
from the Restaurant service's events). Each later step is a request with its
own short deadline, tried again a few times when no reply comes (a Kitchen
process may have just been killed); every step is idempotent at its
receiver, so a repeated step is harmless. A step that never succeeds, or
would start too close to the order's deadline to leave time for compensating
(``RESERVE``), ends the saga by compensating (cancelling the ticket) and
rejecting the order; if even
the compensation fails, the handler raises and the whole command is
delivered again, to run the (idempotent) saga once more. The order's state
is recorded before its event is published, and a repeated command for a
finished order publishes the event again, so no approved order is ever
without its event.
"""

from __future__ import annotations

import contextlib
import json
from typing import TypeVar

from seawall import Command, Context, Payload, RequestError, RetryPolicy, Service

from .messages import (
    ApproveTicket,
    AuthorizeCard,
    CancelTicket,
    CardAuthorization,
    ConsumerVerified,
    CreateOrder,
    CreateTicket,
    MenuRevised,
    OrderApproved,
    OrderOutcome,
    OrderRejected,
    OrderState,
    TicketState,
    ValidateConsumer,
)
from .names import channel
from .store import Store

R = TypeVar("R", bound=Payload)

STEP_TIMEOUT = 1.5
"""Seconds a saga step waits for its reply before asking again."""
STEP_ATTEMPTS = 4
RESERVE = STEP_ATTEMPTS * (STEP_TIMEOUT + 0.25)
"""Seconds of the order's deadline kept for compensating: no step forward starts later."""

SCHEMA = """
CREATE TABLE IF NOT EXISTS orders (
    order_id TEXT PRIMARY KEY, consumer_id TEXT NOT NULL, restaurant_id TEXT NOT NULL,
    total INTEGER NOT NULL, state TEXT NOT NULL, reason TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS menus (
    restaurant_id TEXT PRIMARY KEY, version INTEGER NOT NULL, prices TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS step_retries (order_id TEXT NOT NULL, step TEXT NOT NULL);
"""


class MenuNotReplicated(Exception):
    """The restaurant's menu has not reached this replica yet; the order is tried again."""


class StepFailed(Exception):
    """A saga step got no answer after every attempt."""


def service() -> Service:
    order = Service(channel("order"), retry=RetryPolicy(max_attempts=8, initial_backoff=0.05))
    store = Store("order", SCHEMA)

    async def step(
        ctx: Context, target: str, command: Command, returns: type[R], oid: str, *, forward: bool
    ) -> R:
        for attempt in range(1, STEP_ATTEMPTS + 1):
            if forward and ctx.deadline is not None and ctx.deadline - ctx.now < RESERVE:
                raise StepFailed(f"no time left for {command.type_name} before the deadline")
            try:
                return await ctx.request(
                    channel(target), command, returns=returns, timeout=STEP_TIMEOUT
                )
            except RequestError as exc:
                if attempt == STEP_ATTEMPTS:
                    raise StepFailed(f"{target} did not answer {command.type_name}") from exc
                store.run("INSERT INTO step_retries VALUES (?, ?)", oid, command.type_name)
                await ctx.sleep(0.05 * attempt)
        raise AssertionError("unreachable")

    async def finish(
        ctx: Context, cmd: CreateOrder, state: OrderState, reason: str
    ) -> OrderOutcome:
        store.run(
            "UPDATE orders SET state = ?, reason = ? WHERE order_id = ? AND state = 'pending'",
            state,
            reason,
            cmd.order_id,
        )
        return await announce(ctx, cmd.order_id)

    async def announce(ctx: Context, order_id: str) -> OrderOutcome:
        row = store.one(
            "SELECT state, reason, total, restaurant_id FROM orders WHERE order_id = ?", order_id
        )
        assert row is not None
        state, reason, total, restaurant_id = row
        event: Payload = (
            OrderApproved(order_id=order_id, restaurant_id=restaurant_id, total=total)
            if state == "approved"
            else OrderRejected(order_id=order_id, reason=reason)
        )
        await ctx.publish(event, key=order_id)
        return OrderOutcome(order_id=order_id, state=state, reason=reason, total=total)

    def price(cmd: CreateOrder) -> int | None:
        row = store.one("SELECT prices FROM menus WHERE restaurant_id = ?", cmd.restaurant_id)
        if row is None:
            raise MenuNotReplicated(f"no menu of {cmd.restaurant_id} in the replica yet")
        prices: dict[str, int] = json.loads(row[0])
        if not all(item in prices for item in cmd.items):
            return None
        return sum(prices[item] for item in cmd.items)

    @order.command
    async def create(cmd: CreateOrder, ctx: Context) -> OrderOutcome:
        known = store.one("SELECT state FROM orders WHERE order_id = ?", cmd.order_id)
        if known is not None and known[0] != "pending":
            return await announce(ctx, cmd.order_id)  # a repeat: answer (and publish) again
        check = ValidateConsumer(consumer_id=cmd.consumer_id, order_id=cmd.order_id)
        verified = ctx.request(
            channel("consumer"), check, returns=ConsumerVerified, timeout=STEP_TIMEOUT
        )
        total = price(cmd)  # while the consumer check is on its way
        store.run(
            "INSERT OR IGNORE INTO orders VALUES (?, ?, ?, ?, 'pending', '')",
            cmd.order_id,
            cmd.consumer_id,
            cmd.restaurant_id,
            total or 0,
        )
        try:
            consumer = await verified
        except RequestError:
            consumer = await step(
                ctx, "consumer", check, ConsumerVerified, cmd.order_id, forward=True
            )
        if not consumer.ok:
            return await finish(ctx, cmd, "rejected", "consumer not allowed to order")
        if total is None:
            return await finish(ctx, cmd, "rejected", "item not on the menu")
        return await saga(ctx, cmd, total)

    async def saga(ctx: Context, cmd: CreateOrder, total: int) -> OrderOutcome:
        oid = cmd.order_id
        cancel = CancelTicket(order_id=oid)
        try:
            ticket = CreateTicket(order_id=oid, restaurant_id=cmd.restaurant_id, items=cmd.items)
            await step(ctx, "kitchen", ticket, TicketState, oid, forward=True)
            authorize = AuthorizeCard(
                order_id=oid, consumer_id=cmd.consumer_id, card=cmd.card, total=total
            )
            auth = await step(ctx, "accounting", authorize, CardAuthorization, oid, forward=True)
            if not auth.approved:
                await step(ctx, "kitchen", cancel, TicketState, oid, forward=False)
                return await finish(ctx, cmd, "rejected", "card declined")
            approve = ApproveTicket(order_id=oid)
            approved = await step(ctx, "kitchen", approve, TicketState, oid, forward=True)
            if approved.state == "approved":
                return await finish(ctx, cmd, "approved", "")
            reason = f"ticket is {approved.state}"
        except StepFailed as exc:
            reason = str(exc)
        # compensate; if this fails too, the command is delivered again and the saga reruns
        with contextlib.suppress(StepFailed):
            await step(ctx, "kitchen", cancel, TicketState, oid, forward=False)
            return await finish(ctx, cmd, "rejected", reason)
        raise StepFailed(f"could not cancel the ticket of {oid}; trying the order again")

    @order.subscribe(channel("restaurant.events"), group=channel("order"))
    async def on_menu(event: MenuRevised) -> None:
        store.run(
            "INSERT INTO menus VALUES (?, ?, ?) ON CONFLICT (restaurant_id) DO UPDATE SET "
            "version = excluded.version, prices = excluded.prices "
            "WHERE excluded.version > menus.version",
            event.restaurant_id,
            event.version,
            json.dumps(event.prices),
        )

    return order
