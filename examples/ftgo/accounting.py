"""Accounting service: authorizes cards, declining a configurable share of them.

``FTGO_DECLINE_PERCENT`` (default 10) is the share of orders whose card is
declined, chosen by a stable hash of the order id so a retried authorization
gets the same answer. An authorization is recorded once per order, with the
``AuthorizationChanged`` event, in one outbox transaction; the saga's
compensation reverses it.
"""

from __future__ import annotations

import os
import sqlite3
import zlib
from typing import Any

from seawall import Service
from seawall.outbox import SQLiteTransaction

from .messages import (
    AuthorizationChanged,
    AuthorizeCard,
    CardAuthorization,
    ReverseAuthorization,
)
from .names import channel
from .tables import Tables

SCHEMA = """
CREATE TABLE IF NOT EXISTS authorizations (
    order_id TEXT PRIMARY KEY, consumer_id TEXT NOT NULL, total INTEGER NOT NULL,
    state TEXT NOT NULL
);
"""


def declined(order_id: str, percent: int) -> bool:
    return zlib.crc32(order_id.encode()) % 100 < percent


def service() -> Service:
    accounting = Service(channel("accounting"), expired="drop")  # the saga asks again
    tables = Tables("accounting", SCHEMA)
    accounting.lifespan(tables.lifespan)
    percent = int(os.environ.get("FTGO_DECLINE_PERCENT", "10"))

    def authorization(
        db: sqlite3.Connection, order_id: str, *statements: tuple[str, tuple[Any, ...]]
    ) -> tuple[int, str]:
        """Run ``statements`` (one trip to the database thread); rows changed, the state."""
        rows = sum(db.execute(sql, params).rowcount for sql, params in statements)
        sql = "SELECT state FROM authorizations WHERE order_id = ?"
        return rows, db.execute(sql, (order_id,)).fetchone()[0]

    @accounting.command
    @tables.idempotent
    async def authorize(cmd: AuthorizeCard, tx: SQLiteTransaction) -> CardAuthorization:
        verdict = "declined" if declined(cmd.order_id, percent) else "authorized"
        insert = "INSERT OR IGNORE INTO authorizations VALUES (?, ?, ?, ?)"
        params = (cmd.order_id, cmd.consumer_id, cmd.total, verdict)
        rows, state = await tx.run(lambda db: authorization(db, cmd.order_id, (insert, params)))
        if rows:
            changed = AuthorizationChanged(order_id=cmd.order_id, state=state)
            await tx.publish(changed, key=cmd.order_id)
        return CardAuthorization(order_id=cmd.order_id, approved=state == "authorized")

    @accounting.command
    @tables.idempotent
    async def reverse(cmd: ReverseAuthorization, tx: SQLiteTransaction) -> None:
        # Also for an authorization that never answered and may still come: leave a
        # reversed row so that it changes nothing when it does.
        statements = (
            ("INSERT OR IGNORE INTO authorizations VALUES (?, '', 0, 'reversed')", (cmd.order_id,)),
            (
                "UPDATE authorizations SET state = 'reversed' WHERE order_id = ? "
                "AND state = 'authorized'",
                (cmd.order_id,),
            ),
        )
        rows, _ = await tx.run(lambda db: authorization(db, cmd.order_id, *statements))
        if rows:
            changed = AuthorizationChanged(order_id=cmd.order_id, state="reversed")
            await tx.publish(changed, key=cmd.order_id)

    return accounting
