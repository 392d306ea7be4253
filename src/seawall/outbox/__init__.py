"""The transactional outbox and the idempotent inbox, for services that keep state in tables.

The state layer of seawall, beside :mod:`seawall.es` (whose event log is an
outbox already). A service changes its tables and publishes or sends
messages in **one** database transaction; a relay publishes the committed
messages afterwards, at least once, in commit order per aggregate (the
message's partition key). An idempotent handler records each message it
handled in the same transaction as its writes, so a message delivered twice
changes state once::

    outbox = await SQLiteOutbox.open("orders.db")          # or PostgresOutbox.open(dsn)
    inbox = Inbox(outbox)

    @orders.command
    @inbox.idempotent
    async def place(cmd: PlaceOrder, tx: SQLiteTransaction) -> Receipt:
        await tx.execute("INSERT INTO orders (id, total) VALUES (?, ?)", cmd.order_id, cmd.total)
        await tx.publish(OrderPlaced(order_id=cmd.order_id), key=cmd.order_id)
        return Receipt(order_id=cmd.order_id)

    relay = PollingRelay(outbox, system.transport)          # run relay.run() in a task group

Without the inbox, ``async with outbox.transaction(ctx) as tx:`` opens the
same kind of transaction. Relays: :class:`PollingRelay` (SQLite, or
PostgreSQL with several relays sharing the work through ``FOR UPDATE SKIP
LOCKED``) and :class:`LogTailingRelay` (PostgreSQL logical decoding: reads
the WAL instead of the table). The table layout is Debezium's outbox layout
(see :mod:`seawall.outbox._rows`), so a Debezium connector can relay it too.

The package uses the runtime's :class:`~seawall.Context` (for the envelope)
and the transport interface; the runtime does not know it exists. Its errors
are :class:`~seawall.OutboxError`.
"""

from __future__ import annotations

from .._exceptions import OutboxError
from ._inbox import Inbox
from ._outbox import InboxEntry, Outbox, OutboxTransaction
from ._polling import PollingRelay
from ._postgres import PostgresOutbox, PostgresTransaction
from ._relay import RelayStats
from ._rows import OutboxRow
from ._sqlite import SQLiteOutbox, SQLiteTransaction
from ._tailing import LogTailingRelay

__all__ = [
    "Inbox",
    "InboxEntry",
    "LogTailingRelay",
    "Outbox",
    "OutboxError",
    "OutboxRow",
    "OutboxTransaction",
    "PollingRelay",
    "PostgresOutbox",
    "PostgresTransaction",
    "RelayStats",
    "SQLiteOutbox",
    "SQLiteTransaction",
]
