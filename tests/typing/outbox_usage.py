"""Checked by ``mypy --strict`` (not run by pytest): the outbox API keeps its types."""

from __future__ import annotations

from typing import assert_type

from seawall import Command, Context, Document, Event, MemoryTransport, Service
from seawall.outbox import (
    Inbox,
    LogTailingRelay,
    Outbox,
    OutboxTransaction,
    PollingRelay,
    PostgresOutbox,
    PostgresTransaction,
    RelayStats,
    SQLiteOutbox,
    SQLiteTransaction,
)


class Place(Command, frozen=True):
    order_id: str


class Placed(Event, frozen=True):
    order_id: str


class Receipt(Document, frozen=True):
    order_id: str


async def usage(ctx: Context) -> None:
    sqlite = await SQLiteOutbox.open("orders.db")
    postgres = await PostgresOutbox.open("postgresql://localhost/db", prefix="orders_")
    generic: Outbox[SQLiteTransaction] = sqlite
    inbox = Inbox(sqlite)
    assert_type(inbox, Inbox[SQLiteTransaction])
    orders = Service("orders")

    @orders.command
    @inbox.idempotent
    async def place(cmd: Place, tx: SQLiteTransaction) -> Receipt:
        assert_type(await tx.publish(Placed(order_id=cmd.order_id), key=cmd.order_id), str)
        assert_type(await tx.execute("INSERT INTO orders VALUES (?)", cmd.order_id), int)
        return Receipt(order_id=cmd.order_id)

    assert_type(await place(Place(order_id="o"), ctx), Receipt)

    @Inbox(postgres).idempotent(consumer="orders.ledger")
    async def record(event: Placed, tx: PostgresTransaction) -> None:
        await tx.connection.execute("SELECT 1")

    assert_type(await record(Placed(order_id="o"), ctx), None)

    async with generic.transaction(ctx) as tx:
        assert_type(tx, SQLiteTransaction)
        assert isinstance(tx, OutboxTransaction)
        await tx.send("kitchen", Place(order_id="o"))

    transport = MemoryTransport()
    relay = PollingRelay(sqlite, transport, batch=100)
    assert_type(await relay.step(), int)
    assert_type(relay.statistics(), RelayStats)
    tailing = await LogTailingRelay.open("postgresql://localhost/db", transport)
    assert_type(await tailing.drain(), int)
    await tailing.drop()
