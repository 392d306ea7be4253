"""Checked by ``mypy --strict`` (not run by pytest): the event-sourcing API keeps its types."""

from __future__ import annotations

from typing import Any, assert_type

from seawall import Event
from seawall.es import (
    Aggregate,
    AggregateNotFound,
    ConcurrencyError,
    EventCodec,
    EventStore,
    ProjectionRunner,
    ProjectionStatus,
    RecordedEvent,
    Repository,
    SQLiteEventStore,
)
from seawall.es.postgres import PostgresEventStore


class Deposited(Event, frozen=True):
    amount: int


class Account(Aggregate):
    def __init__(self, id: str) -> None:
        super().__init__(id)
        self.balance = 0

    def apply(self, event: Any) -> None:
        self.balance += event.amount


async def usage(runner: ProjectionRunner) -> None:
    sqlite: EventStore = await SQLiteEventStore.open("events.db")
    postgres: EventStore = await PostgresEventStore.open("postgresql://localhost/db")
    repo = Repository(sqlite, EventCodec(Deposited))
    account = await repo.load(Account, "a")
    assert_type(account, Account)
    assert_type(account.balance, int)
    assert_type(await repo.save(account), int)
    assert_type(await postgres.read_all(), list[RecordedEvent])
    assert_type(await runner.status(), ProjectionStatus)
    async for event in sqlite.subscribe(after=0):
        assert_type(event, RecordedEvent)
    await repo.load(Account)  # type: ignore[call-arg]


async def save_or_say_why(repo: Repository, id: str) -> str:
    """The event store's errors are caught by their public names."""
    try:
        await repo.save(await repo.load(Account, id))
    except ConcurrencyError:
        return "someone saved first: load again and retry"
    except AggregateNotFound as exc:
        assert_type(exc, AggregateNotFound)
        return str(exc)
    return "saved"
