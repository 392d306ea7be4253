"""The bank's events, its Account aggregate and the balances projection."""

from __future__ import annotations

from typing import Any

from seawall import Document, Event
from seawall.es import (
    Aggregate,
    Batch,
    EventCodec,
    Projection,
    ProjectionSet,
    RecordedEvent,
)


class Opened(Event, frozen=True):
    type_name = "bank.Opened"
    owner: str


class Deposited(Event, frozen=True):
    type_name = "bank.Deposited"
    type_version = "2.0.0"
    amount: int
    """Cents (version 1 stored whole euros as ``euros``; see the upcaster below)."""


class Withdrawn(Event, frozen=True):
    type_name = "bank.Withdrawn"
    amount: int


class AccountState(Document, frozen=True):
    type_name = "bank.AccountState"
    owner: str
    balance: int


class InsufficientFunds(Exception):
    """A withdrawal larger than the balance."""


class Account(Aggregate):
    """A bank account: opened once, then deposits and withdrawals in cents."""

    category = "account"
    snapshot_type = AccountState

    def __init__(self, id: str) -> None:
        super().__init__(id)
        self.owner = ""
        self.balance = 0

    # commands: check the rules, then record what happened
    def open(self, owner: str) -> None:
        if self.version:
            raise ValueError(f"account {self.id} is already open")
        self.record(Opened(owner=owner))

    def deposit(self, amount: int) -> None:
        if amount <= 0:
            raise ValueError("deposit a positive amount")
        self.record(Deposited(amount=amount))

    def withdraw(self, amount: int) -> None:
        if amount > self.balance:
            raise InsufficientFunds(f"account {self.id} holds {self.balance}, not {amount}")
        self.record(Withdrawn(amount=amount))

    # events: move the state, no checks
    def apply(self, event: Any) -> None:
        match event:
            case Opened(owner=owner):
                self.owner = owner
            case Deposited(amount=amount):
                self.balance += amount
            case Withdrawn(amount=amount):
                self.balance -= amount

    def snapshot(self) -> AccountState:
        return AccountState(owner=self.owner, balance=self.balance)

    def restore(self, snapshot: Any) -> None:
        self.owner, self.balance = snapshot.owner, snapshot.balance


def make_codec() -> EventCodec:
    codec = EventCodec(Opened, Deposited, Withdrawn, AccountState)

    @codec.upcaster("bank.Deposited", "1.0.0", "2.0.0")
    def euros_to_cents(fields: dict[str, Any]) -> dict[str, Any]:
        return {"amount": fields["euros"] * 100}

    return codec


class Balances(Projection):
    """Read model: one row per account with its owner and balance (SQLite SQL)."""

    name = "balances"
    handles = (Opened, Deposited, Withdrawn)

    def setup(self, batch: Batch) -> None:
        batch.execute(
            "CREATE TABLE IF NOT EXISTS balances "
            "(account TEXT PRIMARY KEY, owner TEXT, balance INTEGER NOT NULL)"
        )

    def reset(self, batch: Batch, from_position: int) -> None:
        batch.execute("DELETE FROM balances")

    async def handle(self, event: object, record: RecordedEvent, batch: Batch) -> None:
        account = record.stream.removeprefix("account-")
        match event:
            case Opened(owner=owner):
                batch.execute("INSERT INTO balances VALUES (?, ?, 0)", account, owner)
            case Deposited(amount=amount):
                batch.execute(
                    "UPDATE balances SET balance = balance + ? WHERE account = ?", amount, account
                )
            case Withdrawn(amount=amount):
                batch.execute(
                    "UPDATE balances SET balance = balance - ? WHERE account = ?", amount, account
                )


def projections() -> ProjectionSet:
    """For ``seawall projections rebuild balances --app examples.bank.domain:projections``."""
    return ProjectionSet(make_codec(), (Balances(),))
