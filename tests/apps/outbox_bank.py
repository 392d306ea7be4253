"""Children for the outbox crash tests, started in forked processes and killed with SIGKILL.

:func:`serve_bank` runs a bank service that keeps its state in SQLite tables:
each ``Deposit`` command is handled (through the inbox, unless told not to)
in one transaction that records the deposit in ``applied`` (no unique key, so
a deposit applied twice shows as two rows) and publishes ``Deposited`` through
the outbox; a polling relay in the same process publishes to the broker.
:func:`serve_tailing` runs a log tailing relay on a PostgreSQL outbox.

Each child says ``ready`` on its pipe once it runs; until then a kill would only
test start-up. The crash tests preload this module in a fork server, so a child
starts in milliseconds (200 kills, not 200 interpreter start-ups).
"""

from __future__ import annotations

import asyncio
from multiprocessing.connection import Connection

from seawall import Command, Context, Event, Service, System
from seawall.outbox import (
    Inbox,
    LogTailingRelay,
    OutboxTransaction,
    PollingRelay,
    SQLiteOutbox,
    SQLiteTransaction,
)
from seawall.transports import connect

BANK = "bank"
EVENTS = "bank.events"
SCHEMA = (
    "CREATE TABLE IF NOT EXISTS applied "
    "(command_id TEXT NOT NULL, account TEXT NOT NULL, seq INTEGER NOT NULL, event_id TEXT)"
)


class Deposit(Command, frozen=True):
    type_name = "bank.Deposit"
    account: str
    seq: int


class Deposited(Event, frozen=True):
    type_name = "bank.Deposited"
    account: str
    seq: int


async def record(cmd: Deposit, tx: OutboxTransaction) -> None:
    """The state change: one deposit row and the event that announces it, one commit."""
    assert isinstance(tx, SQLiteTransaction)
    assert tx.message is not None
    event_id = await tx.publish(Deposited(account=cmd.account, seq=cmd.seq), key=cmd.account)
    await tx.execute(
        "INSERT INTO applied (command_id, account, seq, event_id) VALUES (?, ?, ?, ?)",
        tx.message.id,
        cmd.account,
        cmd.seq,
        event_id,
    )


def bank_service(outbox: SQLiteOutbox, *, idempotent: bool) -> Service:
    bank = Service(BANK, concurrency=16)
    if idempotent:
        bank.command(Inbox(outbox).idempotent(consumer="bank")(record))
    else:

        @bank.command
        async def deposit(cmd: Deposit, ctx: Context) -> None:
            async with outbox.transaction(ctx) as tx:
                await record(cmd, tx)

    return bank


async def run_bank(db: str, url: str, ready: Connection, idempotent: bool) -> None:
    async with await SQLiteOutbox.open(db, sync="none") as outbox:
        await outbox._run(lambda conn: conn.execute(SCHEMA))
        async with System(bank_service(outbox, idempotent=idempotent), transport=url) as system:
            relay = PollingRelay(outbox, system.transport, batch=100)
            async with asyncio.TaskGroup() as tasks:
                tasks.create_task(relay.run())
                ready.send("ready")
                await asyncio.Event().wait()  # until killed


def serve_bank(db: str, url: str, idempotent: bool, ready: Connection) -> None:
    """The bank service and its relay, until killed."""
    asyncio.run(run_bank(db, url, ready, idempotent))


async def run_tailing(dsn: str, url: str, prefix: str, ready: Connection) -> None:
    transport = connect(url)
    try:
        relay = await LogTailingRelay.open(dsn, transport, prefix=prefix, batch=200, poll=0.05)
        ready.send("ready")
        await relay.run()
    finally:
        await transport.close()


def serve_tailing(dsn: str, url: str, prefix: str, ready: Connection) -> None:
    """A log tailing relay on the outbox at ``dsn``, publishing to ``url``, until killed."""
    asyncio.run(run_tailing(dsn, url, prefix, ready))
