"""Kitchen service: tickets, created, approved or cancelled by the order saga.

Every command is idempotent by order id, so a command delivered again (after
a Kitchen process was killed before it acknowledged) changes nothing twice.
Runs as several instances sharing one ticket file.
"""

from __future__ import annotations

import os

from seawall import Service

from .messages import ApproveTicket, CancelTicket, CreateTicket, TicketState
from .names import channel
from .store import Store

SCHEMA = """
CREATE TABLE IF NOT EXISTS tickets (
    order_id TEXT PRIMARY KEY, restaurant_id TEXT NOT NULL, items INTEGER NOT NULL,
    state TEXT NOT NULL, created_by INTEGER NOT NULL
);
"""


def service() -> Service:
    # The Order saga asks again when a step takes too long, so a step that waited past its
    # deadline is worthless here: drop it rather than keep it as a dead letter.
    kitchen = Service(channel("kitchen"), expired="drop")
    store = Store("kitchen", SCHEMA)

    def state(order_id: str) -> TicketState:
        row = store.one("SELECT state FROM tickets WHERE order_id = ?", order_id)
        return TicketState(order_id=order_id, state="none" if row is None else row[0])

    @kitchen.command
    async def create(cmd: CreateTicket) -> TicketState:
        store.run(
            "INSERT OR IGNORE INTO tickets VALUES (?, ?, ?, 'pending', ?)",
            cmd.order_id,
            cmd.restaurant_id,
            len(cmd.items),
            os.getpid(),
        )
        return state(cmd.order_id)

    @kitchen.command
    async def approve(cmd: ApproveTicket) -> TicketState:
        store.run(
            "UPDATE tickets SET state = 'approved' WHERE order_id = ? AND state = 'pending'",
            cmd.order_id,
        )
        return state(cmd.order_id)

    @kitchen.command
    async def cancel(cmd: CancelTicket) -> TicketState:
        # A cancel may overtake the create it compensates (a create still on its way to
        # a killed instance): leave a cancelled ticket behind so that create changes nothing.
        store.run(
            "INSERT OR IGNORE INTO tickets VALUES (?, '', 0, 'cancelled', ?)",
            cmd.order_id,
            os.getpid(),
        )
        store.run(
            "UPDATE tickets SET state = 'cancelled' WHERE order_id = ? AND state = 'pending'",
            cmd.order_id,
        )
        return state(cmd.order_id)

    return kitchen
