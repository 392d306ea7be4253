"""``python -m benchmarks.es_compare``: the event store beside the eventsourcing library.

Same work, same database, same process, one after the other: 1,000 aggregates
of 10 events each (an "opened" event and 9 deposits, ~100-byte payloads), on
a SQLite file (WAL, synchronous=FULL for both) and on PostgreSQL
(``SEAWALL_BENCH_POSTGRES_URL``, default the local ``test`` database; each
side gets its own fresh tables, dropped afterwards). Figures, events or
aggregates per second, median of ``--rounds`` rounds:

* **save**: each aggregate saved once with its 10 new events (one append,
  one transaction). eventsourcing's API is synchronous, so it saves one
  aggregate after the other; seawall is shown the same way (``sequential``)
  and as an asyncio service saves (``concurrent``: 100 saves in flight, which
  the SQLite store commits in groups and PostgreSQL on several connections);
* **load**: the 1,000 aggregates read back one after the other and replayed;
* **load with snapshots**: the same after a snapshot of each at version 10;
* **projection catch-up** (SQLite, 100,000 events): seawall's projection
  runner updating a read-model table in the same database, checkpoint in the
  same transaction; beside it eventsourcing reading its notification log and
  turning every record into a domain event (no read model: a lower bound of
  its own projection cost). Target: >= 50,000 events/s.

The machine is shared and noisy: compare the ratios.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import asyncpg
from eventsourcing.application import Application
from eventsourcing.domain import Aggregate as EsAggregate
from eventsourcing.domain import event as es_event

from seawall import Document, Event
from seawall.es import (
    Aggregate,
    Batch,
    EventCodec,
    EventStore,
    Projection,
    ProjectionRunner,
    RecordedEvent,
    Repository,
    SnapshotPolicy,
    SQLiteEventStore,
)
from seawall.es.postgres import PostgresEventStore

PG_URL = os.environ.get("SEAWALL_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
NOTE = "x" * 80  # with the amount and the JSON around it: ~100-byte payloads
EVENTS = 10
IN_FLIGHT = 100


# -- the same aggregate, both ways ----------------------------------------------------


class Opened(Event, frozen=True):
    type_name = "bench.Opened"
    note: str


class Deposited(Event, frozen=True):
    type_name = "bench.Deposited"
    amount: int
    note: str


class AccountState(Document, frozen=True):
    type_name = "bench.AccountState"
    balance: int
    deposits: int


class Account(Aggregate):
    snapshot_type = AccountState

    def __init__(self, id: str) -> None:
        super().__init__(id)
        self.balance = 0
        self.deposits = 0

    def apply(self, event: Any) -> None:
        if type(event) is Deposited:
            self.balance += event.amount
            self.deposits += 1

    def snapshot(self) -> AccountState:
        return AccountState(balance=self.balance, deposits=self.deposits)

    def restore(self, snapshot: Any) -> None:
        self.balance, self.deposits = snapshot.balance, snapshot.deposits


class EsAccount(EsAggregate):
    @es_event("Opened")
    def __init__(self, note: str) -> None:
        self.balance = 0
        self.deposits = 0

    @es_event("Deposited")
    def deposit(self, amount: int, note: str) -> None:
        self.balance += amount
        self.deposits += 1


CODEC = EventCodec(Opened, Deposited, AccountState)


def new_accounts(count: int) -> list[Account]:
    accounts = []
    for _ in range(count):
        account = Account(str(uuid.uuid4()))
        account.record(Opened(note=NOTE))
        for amount in range(1, EVENTS):
            account.record(Deposited(amount=amount, note=NOTE))
        accounts.append(account)
    return accounts


def new_es_accounts(count: int) -> list[EsAccount]:
    accounts = []
    for _ in range(count):
        account = EsAccount(note=NOTE)
        for amount in range(1, EVENTS):
            account.deposit(amount=amount, note=NOTE)
        accounts.append(account)
    return accounts


# -- one round on one database -----------------------------------------------------------


def es_round(env: dict[str, str], count: int) -> dict[str, float]:
    app = Application(env={**env, "IS_SNAPSHOTTING_ENABLED": "y"})
    accounts = new_es_accounts(count)
    started = time.perf_counter()
    for account in accounts:
        app.save(account)
    save = count * EVENTS / (time.perf_counter() - started)
    ids = [account.id for account in accounts]
    started = time.perf_counter()
    for id in ids:
        assert app.repository.get(id).deposits == EVENTS - 1
    load = count / (time.perf_counter() - started)
    for id in ids:
        app.take_snapshot(id)
    started = time.perf_counter()
    for id in ids:
        assert app.repository.get(id).deposits == EVENTS - 1
    snap = count / (time.perf_counter() - started)
    app.close()
    return {"save": save, "load": load, "snapshots": snap}


async def ours_round(store: EventStore, count: int) -> dict[str, float]:
    repo = Repository(store, CODEC, snapshots=SnapshotPolicy(every=1_000_000))
    sequential = new_accounts(count)
    started = time.perf_counter()
    for account in sequential:
        await repo.save(account)
    save = count * EVENTS / (time.perf_counter() - started)
    concurrent = new_accounts(count)
    started = time.perf_counter()
    for chunk in range(0, count, IN_FLIGHT):
        await asyncio.gather(*(repo.save(a) for a in concurrent[chunk : chunk + IN_FLIGHT]))
    save_concurrent = count * EVENTS / (time.perf_counter() - started)
    ids = [account.id for account in sequential]
    started = time.perf_counter()
    for id in ids:
        assert (await repo.load(Account, id)).deposits == EVENTS - 1
    load = count / (time.perf_counter() - started)
    for id in ids:
        await repo.snapshot(await repo.load(Account, id))
    started = time.perf_counter()
    for id in ids:
        assert (await repo.load(Account, id)).deposits == EVENTS - 1
    snap = count / (time.perf_counter() - started)
    return {"save": save, "save_concurrent": save_concurrent, "load": load, "snapshots": snap}


# -- projection catch-up -----------------------------------------------------------------


class Balances(Projection):
    name = "balances"
    handles = (Opened, Deposited)

    def setup(self, batch: Batch) -> None:
        batch.execute("CREATE TABLE IF NOT EXISTS balances (id TEXT PRIMARY KEY, balance INT)")

    def reset(self, batch: Batch, from_position: int) -> None:
        batch.execute("DELETE FROM balances")

    async def handle(self, event: object, record: RecordedEvent, batch: Batch) -> None:
        amount = event.amount if type(event) is Deposited else 0  # type: ignore[attr-defined]
        batch.execute(
            "INSERT INTO balances VALUES (?, ?) ON CONFLICT (id) DO UPDATE "
            "SET balance = balance + excluded.balance",
            record.stream,
            amount,
        )


async def catch_up(directory: Path, total: int, rounds: int) -> tuple[float, float]:
    async with await SQLiteEventStore.open(directory / "catchup.db") as store:
        repo = Repository(store, CODEC)
        accounts = new_accounts(total // EVENTS)
        for chunk in range(0, len(accounts), IN_FLIGHT):
            await asyncio.gather(*(repo.save(a) for a in accounts[chunk : chunk + IN_FLIGHT]))
        runner = ProjectionRunner(store, CODEC, Balances(), batch=1000)
        rates = []
        for _ in range(rounds):
            started = time.perf_counter()
            assert await runner.rebuild() == total
            rates.append(total / (time.perf_counter() - started))
        assert await store.query("SELECT sum(balance) FROM balances") == [
            (len(accounts) * sum(range(1, EVENTS)),)
        ]
    app = Application(
        env={"PERSISTENCE_MODULE": "eventsourcing.sqlite", "SQLITE_DBNAME": str(directory / "es")}
    )
    es_accounts = new_es_accounts(total // EVENTS)
    for chunk in range(0, len(es_accounts), IN_FLIGHT):  # untimed fill: 100 per transaction
        app.save(*es_accounts[chunk : chunk + IN_FLIGHT])
    es_rates = [es_read_log(app, total) for _ in range(rounds)]
    app.close()
    return statistics.median(es_rates), statistics.median(rates)


def es_read_log(app: Application, total: int) -> float:
    balances: dict[Any, int] = {}
    to_domain = app.mapper.to_domain_event
    started = time.perf_counter()
    start, done = 1, 0
    while True:
        notifications = app.recorder.select_notifications(start, 1000)
        if not notifications:
            break
        for notification in notifications:
            domain_event = to_domain(notification)
            amount = getattr(domain_event, "amount", 0)
            balances[domain_event.originator_id] = (
                balances.get(domain_event.originator_id, 0) + amount
            )
            done += 1
        start = notifications[-1].id + 1
    assert done == total
    return total / (time.perf_counter() - started)


# -- driver ------------------------------------------------------------------------------


def median_of(samples: list[dict[str, float]]) -> dict[str, float]:
    return {key: statistics.median(s[key] for s in samples) for key in samples[0]}


async def sqlite_rounds(count: int, rounds: int) -> tuple[dict[str, float], dict[str, float]]:
    theirs, ours = [], []
    for _ in range(rounds):
        with tempfile.TemporaryDirectory(prefix="seawall-es-bench-") as tmp:
            env = {"PERSISTENCE_MODULE": "eventsourcing.sqlite", "SQLITE_DBNAME": f"{tmp}/es.db"}
            theirs.append(es_round(env, count))
            async with await SQLiteEventStore.open(Path(tmp) / "seawall.db") as store:
                ours.append(await ours_round(store, count))
    return median_of(theirs), median_of(ours)


async def postgres_rounds(count: int, rounds: int) -> tuple[dict[str, float], dict[str, float]]:
    parts = urlsplit(PG_URL)
    theirs, ours = [], []
    admin = await asyncpg.connect(PG_URL)
    try:
        for _ in range(rounds):
            schema = f"esbench_{uuid.uuid4().hex[:8]}"
            await admin.execute(f"CREATE SCHEMA {schema}")
            env = {
                "PERSISTENCE_MODULE": "eventsourcing.postgres",
                "POSTGRES_DBNAME": parts.path.lstrip("/"),
                "POSTGRES_HOST": parts.hostname or "127.0.0.1",
                "POSTGRES_PORT": str(parts.port or 5432),
                "POSTGRES_USER": parts.username or "postgres",
                "POSTGRES_PASSWORD": parts.password or "",
                "POSTGRES_SCHEMA": schema,
            }
            try:
                theirs.append(await asyncio.to_thread(es_round, env, count))
            finally:
                await admin.execute(f"DROP SCHEMA {schema} CASCADE")
            store = await PostgresEventStore.open(PG_URL, prefix=f"{schema}_", max_connections=20)
            try:
                ours.append(await ours_round(store, count))
            finally:
                await store.drop()
                await store.close()
    finally:
        await admin.close()
    return median_of(theirs), median_of(ours)


def show(title: str, theirs: dict[str, float], ours: dict[str, float]) -> None:
    print(title)
    rows: list[tuple[str, str, str]] = [
        ("save, events/s (sequential)", "save", "save"),
        ("save, events/s (concurrent)", "save", "save_concurrent"),
        ("load, aggregates/s", "load", "load"),
        ("load with snapshots, aggregates/s", "snapshots", "snapshots"),
    ]
    for label, their_key, our_key in rows:
        anchor, figure = theirs[their_key], ours[our_key]
        print(
            f"  {label:<36} eventsourcing {anchor:>9,.0f}  seawall {figure:>9,.0f}  "
            f"{figure / anchor:5.1f}x"
        )


def run(fn: Callable[[], Coroutine[Any, Any, Any]]) -> Any:
    return asyncio.run(fn())


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.es_compare", description=__doc__)
    parser.add_argument("--aggregates", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--catch-up", type=int, default=100_000, help="events for catch-up")
    parser.add_argument("--skip-postgres", action="store_true")
    args = parser.parse_args()
    count, rounds = args.aggregates, args.rounds
    print(
        f"{count} aggregates x {EVENTS} events (~100-byte payloads), median of {rounds} rounds, "
        "figures beside the eventsourcing library measured in the same run; load average "
        f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores at the start"
    )
    theirs, ours = run(lambda: sqlite_rounds(count, rounds))
    show("SQLite file (WAL, synchronous=FULL)", theirs, ours)
    if not args.skip_postgres:
        theirs, ours = run(lambda: postgres_rounds(count, rounds))
        show(f"PostgreSQL ({urlsplit(PG_URL).hostname})", theirs, ours)
    with tempfile.TemporaryDirectory(prefix="seawall-es-bench-") as tmp:
        anchor, figure = run(lambda: catch_up(Path(tmp), args.catch_up, rounds))
    print(
        f"projection catch-up over {args.catch_up:,} stored events (SQLite), events/s; "
        f"load average {os.getloadavg()[0]:.1f}"
    )
    print(
        f"  {'read model + checkpoint per batch':<36} eventsourcing {anchor:>9,.0f}  "
        f"seawall {figure:>9,.0f}  {figure / anchor:5.1f}x  (target >= 50,000/s: "
        f"{'met' if figure >= 50_000 else 'NOT met'})"
    )


if __name__ == "__main__":
    main()
