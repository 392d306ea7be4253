"""Kitchen service: tickets, created, approved or rejected by the Order service's saga.

Each command runs once per message (the inbox) in one transaction with the
ticket row and the ``TicketChanged`` event it publishes (the outbox), and is
idempotent by order id as well: the saga sends a new message when it asks
again, so a ticket is created once however many attempts arrive. Runs as
several instances sharing one file.
"""

from __future__ import annotations

import os

from seawall import Service
from seawall.outbox import SQLiteTransaction

from .messages import ApproveTicket, CreateTicket, RejectTicket, TicketChanged, TicketState
from .names import channel
from .tables import Tables

SCHEMA = """
CREATE TABLE IF NOT EXISTS tickets (
    order_id TEXT PRIMARY KEY, restaurant_id TEXT NOT NULL, items INTEGER NOT NULL,
    state TEXT NOT NULL, created_by INTEGER NOT NULL
);
"""


def service() -> Service:
    # The saga asks again when a step takes too long, so a step that waited past its
    # deadline is worthless here: drop it rather than keep it as a dead letter.
    kitchen = Service(channel("kitchen"), expired="drop")
    tables = Tables("kitchen", SCHEMA)
    kitchen.lifespan(tables.lifespan)

    async def changed(tx: SQLiteTransaction, order_id: str, rows: int) -> TicketState:
        row = await tx.fetchone("SELECT state FROM tickets WHERE order_id = ?", order_id)
        state = TicketState(order_id=order_id, state="none" if row is None else row[0])
        if rows:
            await tx.publish(TicketChanged(order_id=order_id, state=state.state), key=order_id)
        return state

    @kitchen.command
    @tables.idempotent
    async def create(cmd: CreateTicket, tx: SQLiteTransaction) -> TicketState:
        rows = await tx.execute(
            "INSERT OR IGNORE INTO tickets VALUES (?, ?, ?, 'pending', ?)",
            cmd.order_id,
            cmd.restaurant_id,
            len(cmd.items),
            os.getpid(),
        )
        return await changed(tx, cmd.order_id, rows)

    @kitchen.command
    @tables.idempotent
    async def approve(cmd: ApproveTicket, tx: SQLiteTransaction) -> TicketState:
        rows = await tx.execute(
            "UPDATE tickets SET state = 'approved' WHERE order_id = ? AND state = 'pending'",
            cmd.order_id,
        )
        return await changed(tx, cmd.order_id, rows)

    @kitchen.command
    @tables.idempotent
    async def reject(cmd: RejectTicket, tx: SQLiteTransaction) -> TicketState:
        # The saga also compensates a create that never answered, which may still be on its
        # way (to a killed instance): leave a rejected ticket so that create changes nothing.
        rows = await tx.execute(
            "INSERT OR IGNORE INTO tickets VALUES (?, '', 0, 'rejected', ?)",
            cmd.order_id,
            os.getpid(),
        )
        rows += await tx.execute(
            "UPDATE tickets SET state = 'rejected' WHERE order_id = ? AND state = 'pending'",
            cmd.order_id,
        )
        return await changed(tx, cmd.order_id, rows)

    return kitchen
