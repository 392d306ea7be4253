"""Kitchen service: tickets, created, approved or rejected by the Order service's saga.

Each command runs once per message (the inbox) in one transaction with the
ticket row and the ``TicketChanged`` event it publishes (the outbox), and is
idempotent by order id as well: the saga sends a new message when it asks
again, so a ticket is created once however many attempts arrive. Runs as
several instances sharing one file.
"""

from __future__ import annotations

import os
import sqlite3
from typing import Any

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


Statement = tuple[str, tuple[Any, ...]]
TOMBSTONE = "INSERT OR IGNORE INTO tickets VALUES (?, '', 0, 'rejected', ?)"


def service() -> Service:
    # The saga asks again when a step takes too long, so a step that waited past its
    # deadline is worthless here: drop it rather than keep it as a dead letter.
    kitchen = Service(channel("kitchen"), expired="drop")
    tables = Tables("kitchen", SCHEMA)
    kitchen.lifespan(tables.lifespan)

    def ticket(db: sqlite3.Connection, order_id: str, *statements: Statement) -> tuple[int, str]:
        """Run ``statements`` (one trip to the database thread); rows changed, ticket state."""
        rows = sum(db.execute(sql, params).rowcount for sql, params in statements)
        row = db.execute("SELECT state FROM tickets WHERE order_id = ?", (order_id,)).fetchone()
        return rows, "none" if row is None else row[0]

    async def change(tx: SQLiteTransaction, order_id: str, *statements: Statement) -> TicketState:
        rows, state = await tx.run(lambda db: ticket(db, order_id, *statements))
        if rows:
            await tx.publish(TicketChanged(order_id=order_id, state=state), key=order_id)
        return TicketState(order_id=order_id, state=state)

    @kitchen.command
    @tables.idempotent
    async def create(cmd: CreateTicket, tx: SQLiteTransaction) -> TicketState:
        insert = "INSERT OR IGNORE INTO tickets VALUES (?, ?, ?, 'pending', ?)"
        params = (cmd.order_id, cmd.restaurant_id, len(cmd.items), os.getpid())
        return await change(tx, cmd.order_id, (insert, params))

    @kitchen.command
    @tables.idempotent
    async def approve(cmd: ApproveTicket, tx: SQLiteTransaction) -> TicketState:
        sql = "UPDATE tickets SET state = 'approved' WHERE order_id = ? AND state = 'pending'"
        return await change(tx, cmd.order_id, (sql, (cmd.order_id,)))

    @kitchen.command
    @tables.idempotent
    async def reject(cmd: RejectTicket, tx: SQLiteTransaction) -> TicketState:
        # The saga also compensates a create that never answered, which may still be on its
        # way (to a killed instance): leave a rejected ticket so that create changes nothing.
        oid = cmd.order_id
        update = "UPDATE tickets SET state = 'rejected' WHERE order_id = ? AND state = 'pending'"
        return await change(tx, oid, (TOMBSTONE, (oid, os.getpid())), (update, (oid,)))

    return kitchen
