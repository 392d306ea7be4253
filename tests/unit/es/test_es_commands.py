"""Command sourcing: a service logs each command before handling it; replay re-runs
the commands on fresh state with side effects caught by a sink, not delivered."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from seawall import Command, Context, Document, Event, RequestError, Service, VirtualClock
from seawall.es import (
    Aggregate,
    CommandLog,
    EventCodec,
    ReplaySink,
    Repository,
    SideEffect,
    SQLiteEventStore,
)
from seawall.testing import TestSystem


class Open(Command, frozen=True):
    type_name = "bank.Open"
    account: str
    deposit: int


class Opened(Event, frozen=True):
    type_name = "bank.Opened"
    deposit: int


class Welcome(Event, frozen=True):
    type_name = "bank.Welcome"
    account: str


class Receipt(Document, frozen=True):
    type_name = "bank.Receipt"
    balance: int


class Account(Aggregate):
    def __init__(self, id: str) -> None:
        super().__init__(id)
        self.balance = 0

    def apply(self, event: Any) -> None:
        self.balance += event.deposit


Handler = Callable[[Open, Context], Awaitable[Receipt]]


def handler_on(repo: Repository) -> Handler:
    async def open_account(cmd: Open, ctx: Context) -> Receipt:
        account = Account(cmd.account)
        account.record(Opened(deposit=cmd.deposit))
        await repo.save(account)
        await ctx.publish(Welcome(account=cmd.account))
        return Receipt(balance=account.balance)

    return open_account


async def test_commands_are_logged_then_replayed_on_fresh_state(tmp_path: Path) -> None:
    codec = EventCodec(Open, Opened)
    # The stores share the test system's virtual clock: while their writer thread
    # works, the clock must not leap to the request's deadline (a 1-second
    # budget on a clock that jumps would expire before the first commit).
    clock = VirtualClock()
    async with (
        await SQLiteEventStore.open(tmp_path / "events.db", clock=clock) as events,
        await SQLiteEventStore.open(tmp_path / "commands.db", clock=clock) as commands,
    ):
        log = CommandLog(commands, codec)
        bank = Service("bank")
        bank.command(log.sourced(handler_on(Repository(events, codec))))
        async with TestSystem(bank, clock=clock) as system:
            for n, amount in enumerate((10, 20, 30)):
                reply = await system.context().request(
                    "bank", Open(account=f"a{n}", deposit=amount), returns=Receipt, timeout=1.0
                )
                assert reply.balance == amount
            welcomes = [m for _, m in system.transport.records if m.type == "bank.Welcome"]
        assert len(welcomes) == 3
        logged = await commands.read_all()
        assert [codec.decode(r) for r in logged] == [
            Open(account="a0", deposit=10),
            Open(account="a1", deposit=20),
            Open(account="a2", deposit=30),
        ]

        async with await SQLiteEventStore.open(tmp_path / "fresh.db") as fresh:
            repo = Repository(fresh, codec)
            sink = await log.replay(handler_on(repo))
            for n, amount in enumerate((10, 20, 30)):
                assert (await repo.load(Account, f"a{n}")).balance == amount
        assert sink.effects == [
            SideEffect("publish", None, Welcome(account=f"a{n}")) for n in range(3)
        ]


async def test_a_redelivered_command_is_logged_once(tmp_path: Path) -> None:
    async with await SQLiteEventStore.open(tmp_path / "commands.db") as commands:
        log = CommandLog(commands, EventCodec(Open))
        assert await log.record(Open(account="a", deposit=1), id="m-1")
        assert not await log.record(Open(account="a", deposit=1), id="m-1")
        assert await log.record(Open(account="b", deposit=1))
        assert len(await commands.read_all()) == 2


async def test_requests_cannot_be_replayed(tmp_path: Path) -> None:
    async def asks(cmd: Open, ctx: Any) -> None:
        await ctx.request("fraud", cmd, returns=Receipt)

    async with await SQLiteEventStore.open(tmp_path / "commands.db") as commands:
        log = CommandLog(commands, EventCodec(Open))
        await log.record(Open(account="a", deposit=1))
        with pytest.raises(RequestError, match="replies cannot be replayed"):
            await log.replay(asks)
        sink = ReplaySink()
        await sink.send("mail", Open(account="x", deposit=0))
        assert sink.effects[0].kind == "send"
