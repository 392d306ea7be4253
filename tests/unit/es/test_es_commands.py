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
    CommandOutcome,
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
        assert [codec.decode(r) for r in logged] == [  # each command, then how it ended
            Open(account="a0", deposit=10),
            CommandOutcome(reply_type="bank.Receipt", reply=b'{"balance":10}'),
            Open(account="a1", deposit=20),
            CommandOutcome(reply_type="bank.Receipt", reply=b'{"balance":20}'),
            Open(account="a2", deposit=30),
            CommandOutcome(reply_type="bank.Receipt", reply=b'{"balance":30}'),
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


async def test_a_repeated_command_is_not_handled_again_and_gets_the_same_reply(
    tmp_path: Path,
) -> None:
    clock = VirtualClock()
    handled: list[str] = []
    async with await SQLiteEventStore.open(tmp_path / "commands.db", clock=clock) as commands:
        log = CommandLog(commands, EventCodec(Open))
        bank = Service("bank")

        @bank.command
        @log.sourced
        async def open_account(cmd: Open, ctx: Context) -> Receipt:
            handled.append(cmd.account)
            return Receipt(balance=cmd.deposit)

        async with TestSystem(bank, clock=clock) as system:
            client = system.context()
            first = await client.request("bank", Open(account="a", deposit=5), returns=Receipt)
            (request,) = system.messages("bank")
            await system.transport.publish("bank", request)  # delivered again
            await system.settle()
            again = await open_account(
                Open(account="a", deposit=5), Context(system.system.node, "bank", request)
            )
        assert first == again == Receipt(balance=5)
        assert handled == ["a"]
        assert await log.outcome(request.id) == CommandOutcome(
            reply_type="bank.Receipt", reply=b'{"balance":5}'
        )


async def test_a_command_that_failed_is_handled_again(tmp_path: Path) -> None:
    attempts: list[int] = []

    async def flaky(cmd: Open, ctx: Any) -> None:
        attempts.append(cmd.deposit)
        if len(attempts) == 1:
            raise RuntimeError("the first attempt fails")

    async with await SQLiteEventStore.open(tmp_path / "commands.db") as commands:
        log = CommandLog(commands, EventCodec(Open))
        handler = log.sourced(flaky)
        async with TestSystem() as system:
            request = system.context().envelope(Open(account="a", deposit=1))
            ctx = Context(system.system.node, "bank", request)
            with pytest.raises(RuntimeError):
                await handler(Open(account="a", deposit=1), ctx)
            assert await log.outcome(request.id) is None  # logged, not finished
            assert await handler(Open(account="a", deposit=1), ctx) is None
            assert await handler(Open(account="a", deposit=1), ctx) is None
        assert attempts == [1, 1]  # once failed, once done, then skipped
        assert await log.outcome(request.id) == CommandOutcome()
        replayed: list[Open] = []

        async def record(cmd: Open, sink: Any) -> None:
            replayed.append(cmd)

        await log.replay(record)
        assert replayed == [Open(account="a", deposit=1)]  # outcomes are not replayed
