"""Order service: takes orders and runs each one as a saga (:mod:`seawall.sagas`).

    verify consumer -> create ticket -> authorize card -> approve ticket -> approve order
                       reject ticket <- (card declined, or no answer in time)
    reject order  <-------------------- (any failure: compensations run last step first)

``create`` prices the order from the local menu replica (kept up to date from
the Restaurant service's events), records it as pending and starts the
create-order saga, then waits for the saga to end to answer the client. The
saga's progress is in its own event store (``order-sagas.db``): its commands
are sent from that log and the participants' replies come back on the durable
``order.saga-replies`` channel, so an Order process killed at any step goes on
where it stopped once restarted (a repeated ``CreateOrder`` finds the saga
already started and waits for it). Approving and rejecting the order are the
saga's own commands to this service: each runs once (the inbox) and records
the order's state with the event it publishes (the outbox).

``FTGO_CRASH_AT`` (for the crash test) names saga step boundaries, e.g.
``sent:create ticket,compensating``: the process kills itself with SIGKILL
right after storing such an event, once per boundary per run.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

from seawall import Context, Payload, RetryPolicy, Service
from seawall.es import SQLiteEventStore
from seawall.outbox import SQLiteTransaction
from seawall.sagas import (
    CommandSent,
    Compensating,
    Saga,
    SagaCompleted,
    SagaEvent,
    SagaRejected,
    SagaRunner,
    SagaStarted,
    SagaState,
    Step,
    StepCompensated,
    StepDone,
    StepFailed,
)

from .messages import (
    ApproveOrder,
    ApproveTicket,
    AuthorizeCard,
    CardAuthorization,
    ConsumerVerified,
    CreateOrder,
    CreateTicket,
    MenuRevised,
    OrderApproved,
    OrderDetails,
    OrderOutcome,
    OrderRejected,
    RejectOrder,
    RejectTicket,
    ReverseAuthorization,
    TicketState,
    ValidateConsumer,
)
from .names import channel
from .store import state_dir
from .tables import Tables

STEP_TIMEOUT = 1.5
"""Seconds a saga step waits for its reply before asking again."""
STEP_RETRY = RetryPolicy(max_attempts=4, initial_backoff=0.05, max_backoff=0.5)
SAGA_TIMEOUT = 15.0
"""Seconds an order may take up to its pivot (the card authorization); then it compensates."""

SCHEMA = """
CREATE TABLE IF NOT EXISTS orders (
    order_id TEXT PRIMARY KEY, consumer_id TEXT NOT NULL, restaurant_id TEXT NOT NULL,
    total INTEGER NOT NULL, state TEXT NOT NULL, reason TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS menus (
    restaurant_id TEXT PRIMARY KEY, version INTEGER NOT NULL, prices TEXT NOT NULL
);
"""


def create_order() -> Saga[OrderDetails]:
    """The create-order saga (channel names carry the run's prefix, so it is built per run)."""
    return Saga(
        "create_order",
        OrderDetails,
        timeout=SAGA_TIMEOUT,
        steps=[
            Step(  # the order was recorded pending when the saga started
                "create order",
                to=channel("order"),
                compensate=lambda o, why: RejectOrder(order_id=o.order_id, reason=why),
            ),
            Step(
                "verify consumer",
                to=channel("consumer"),
                send=lambda o: ValidateConsumer(consumer_id=o.consumer_id, order_id=o.order_id),
                replies=(ConsumerVerified,),
                check=lambda o, r: None if r.ok else "consumer not allowed to order",
                timeout=STEP_TIMEOUT,
                retry=STEP_RETRY,
            ),
            Step(
                "create ticket",
                to=channel("kitchen"),
                send=lambda o: CreateTicket(
                    order_id=o.order_id, restaurant_id=o.restaurant_id, items=o.items
                ),
                replies=(TicketState,),
                compensate=lambda o, why: RejectTicket(order_id=o.order_id),
                timeout=STEP_TIMEOUT,
                retry=STEP_RETRY,
            ),
            Step(  # the pivot: once the card is authorized, the order goes through
                "authorize card",
                to=channel("accounting"),
                send=lambda o: AuthorizeCard(
                    order_id=o.order_id, consumer_id=o.consumer_id, card=o.card, total=o.total
                ),
                replies=(CardAuthorization,),
                check=lambda o, r: None if r.approved else "card declined",
                compensate=lambda o, why: ReverseAuthorization(order_id=o.order_id),
                timeout=STEP_TIMEOUT,
                retry=STEP_RETRY,
            ),
            Step(
                "approve ticket",
                to=channel("kitchen"),
                send=lambda o: ApproveTicket(order_id=o.order_id),
                replies=(TicketState,),
                timeout=STEP_TIMEOUT,
                retry=STEP_RETRY,
                retriable=True,
            ),
            Step(
                "approve order",
                to=channel("order"),
                send=lambda o: ApproveOrder(order_id=o.order_id),
                replies=(OrderOutcome,),
                timeout=STEP_TIMEOUT,
                retry=STEP_RETRY,
                retriable=True,
            ),
        ],
    )


class MenuNotReplicated(Exception):
    """The restaurant's menu has not reached this replica yet; the order is tried again."""


def service() -> Service:
    # Each CreateOrder waits for its saga, so the service takes many at once; the saga's
    # own ApproveOrder and RejectOrder come on this channel too and must find room.
    order = Service(
        channel("order"),
        retry=RetryPolicy(max_attempts=8, initial_backoff=0.05),
        concurrency=256,
        expired="drop",  # past its deadline a command is worthless: its sender asks again
    )
    tables = Tables("order", SCHEMA)
    order.lifespan(tables.lifespan)
    saga = create_order()

    @order.lifespan
    async def sagas(ctx: Context) -> AsyncIterator[SagaRunner]:
        store = await SQLiteEventStore.open(
            state_dir() / "order-sagas.db", sync="none", clock=ctx.clock
        )
        runner = SagaRunner(
            store,
            ctx.transport,
            saga,
            service=channel("order"),
            clock=ctx.clock,
            on_stored=crash_at(os.environ.get("FTGO_CRASH_AT", "")),
        )
        try:
            async with asyncio.TaskGroup() as tasks:
                task = tasks.create_task(runner.run())
                yield runner
                task.cancel()
        finally:
            await store.close()

    def price(cmd: CreateOrder) -> int | None:
        row = tables.store.one(
            "SELECT prices FROM menus WHERE restaurant_id = ?", cmd.restaurant_id
        )
        if row is None:
            raise MenuNotReplicated(f"no menu of {cmd.restaurant_id} in the replica yet")
        prices: dict[str, int] = json.loads(row[0])
        if not all(item in prices for item in cmd.items):
            return None
        return sum(prices[item] for item in cmd.items)

    async def outcome(order_id: str) -> OrderOutcome:
        row = tables.store.one(
            "SELECT state, reason, total FROM orders WHERE order_id = ?", order_id
        )
        assert row is not None
        state, reason, total = row
        return OrderOutcome(order_id=order_id, state=state, reason=reason, total=total)

    @order.command
    async def create(cmd: CreateOrder, ctx: Context) -> OrderOutcome:
        runner = ctx.resource(sagas)
        if await runner.view(saga, cmd.order_id) is None:  # else: a repeat; wait for it
            total = price(cmd)
            async with tables.transaction(ctx) as tx:
                if total is None:  # nothing to undo yet: rejected before any step
                    await record(tx, cmd, 0, "rejected", "item not on the menu")
                else:
                    await record(tx, cmd, total, "pending", "")
            if total is None:
                return await outcome(cmd.order_id)
            details = OrderDetails(
                order_id=cmd.order_id,
                consumer_id=cmd.consumer_id,
                restaurant_id=cmd.restaurant_id,
                items=cmd.items,
                card=cmd.card,
                total=total,
            )
            await runner.start(saga, cmd.order_id, details)
        await runner.wait(saga, cmd.order_id)
        return await outcome(cmd.order_id)

    async def record(
        tx: SQLiteTransaction, cmd: CreateOrder, total: int, state: str, reason: str
    ) -> None:
        rows = await tx.execute(
            "INSERT OR IGNORE INTO orders VALUES (?, ?, ?, ?, ?, ?)",
            cmd.order_id,
            cmd.consumer_id,
            cmd.restaurant_id,
            total,
            state,
            reason,
        )
        if rows and state == "rejected":
            await tx.publish(OrderRejected(order_id=cmd.order_id, reason=reason), key=cmd.order_id)

    @order.command
    @tables.idempotent
    async def approve(cmd: ApproveOrder, tx: SQLiteTransaction) -> OrderOutcome:
        return await finish(tx, cmd.order_id, "approved", "")

    @order.command
    @tables.idempotent
    async def reject(cmd: RejectOrder, tx: SQLiteTransaction) -> None:
        await finish(tx, cmd.order_id, "rejected", cmd.reason)

    def settle(db: sqlite3.Connection, order_id: str, state: str, reason: str) -> tuple[Any, ...]:
        """Move a pending order to ``state`` (one trip to the database thread); whether it
        moved, and the order's row."""
        moved = db.execute(
            "UPDATE orders SET state = ?, reason = ? WHERE order_id = ? AND state = 'pending'",
            (state, reason, order_id),
        ).rowcount
        sql = "SELECT state, reason, total, restaurant_id FROM orders WHERE order_id = ?"
        return (moved, *db.execute(sql, (order_id,)).fetchone())

    async def finish(tx: SQLiteTransaction, order_id: str, state: str, reason: str) -> OrderOutcome:
        moved, now, why, total, restaurant_id = await tx.run(
            lambda db: settle(db, order_id, state, reason)
        )
        if moved:
            event: Payload = (
                OrderApproved(order_id=order_id, restaurant_id=restaurant_id, total=total)
                if state == "approved"
                else OrderRejected(order_id=order_id, reason=reason)
            )
            await tx.publish(event, key=order_id)
        return OrderOutcome(order_id=order_id, state=now, reason=why, total=total)

    @order.subscribe(channel("restaurant.events"), group=channel("order"))
    @tables.idempotent
    async def on_menu(event: MenuRevised, tx: SQLiteTransaction) -> None:
        await tx.execute(
            "INSERT INTO menus VALUES (?, ?, ?) ON CONFLICT (restaurant_id) DO UPDATE SET "
            "version = excluded.version, prices = excluded.prices "
            "WHERE excluded.version > menus.version",
            event.restaurant_id,
            event.version,
            json.dumps(event.prices),
        )

    return order


def boundary(event: SagaEvent) -> str:
    """The name of the step boundary right after ``event`` is stored (``FTGO_CRASH_AT``)."""
    match event:
        case SagaStarted():
            return "started"
        case CommandSent(phase="forward"):
            return f"sent:{event.name}"
        case CommandSent():
            return f"sent compensation:{event.name}"
        case StepDone():
            return f"done:{event.name}"
        case StepFailed():
            return f"failed:{event.name}"
        case Compensating():
            return "compensating"
        case StepCompensated():
            return f"compensated:{event.name}"
        case SagaCompleted():
            return "completed"
        case SagaRejected():
            return "rejected"
    return type(event).__name__


def crash_at(spec: str) -> Callable[[SagaState, Sequence[SagaEvent]], None] | None:
    """An ``on_stored`` hook that kills this process at the boundaries ``spec`` names (comma
    separated), the first time each is reached in this run; None when ``spec`` is empty."""
    wanted = {name.strip() for name in spec.split(",") if name.strip()}
    if not wanted:
        return None
    marks = state_dir() / "crashes"
    marks.mkdir(parents=True, exist_ok=True)

    def check(state: SagaState, events: Sequence[SagaEvent]) -> None:
        for event in events:
            name = boundary(event)
            if name in wanted and not (marks / name).exists():
                (marks / name).write_text(state.id)
                os.kill(os.getpid(), signal.SIGKILL)

    return check
