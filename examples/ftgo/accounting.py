"""Accounting service: authorizes cards, declining a configurable share of them.

``FTGO_DECLINE_PERCENT`` (default 10) is the share of orders whose card is
declined, chosen by a stable hash of the order id so a retried authorization
gets the same answer. Authorizations are recorded once per order.
"""

from __future__ import annotations

import os
import zlib

from seawall import Service

from .messages import AuthorizeCard, CardAuthorization
from .names import channel
from .store import Store

SCHEMA = """
CREATE TABLE IF NOT EXISTS authorizations (
    order_id TEXT PRIMARY KEY, consumer_id TEXT NOT NULL, total INTEGER NOT NULL,
    approved INTEGER NOT NULL
);
"""


def declined(order_id: str, percent: int) -> bool:
    return zlib.crc32(order_id.encode()) % 100 < percent


def service() -> Service:
    accounting = Service(channel("accounting"), expired="drop")  # the saga asks again
    store = Store("accounting", SCHEMA)
    percent = int(os.environ.get("FTGO_DECLINE_PERCENT", "10"))

    @accounting.command
    async def authorize(cmd: AuthorizeCard) -> CardAuthorization:
        approved = not declined(cmd.order_id, percent)
        store.run(
            "INSERT OR IGNORE INTO authorizations VALUES (?, ?, ?, ?)",
            cmd.order_id,
            cmd.consumer_id,
            cmd.total,
            approved,
        )
        row = store.one("SELECT approved FROM authorizations WHERE order_id = ?", cmd.order_id)
        assert row is not None
        return CardAuthorization(order_id=cmd.order_id, approved=bool(row[0]))

    return accounting
