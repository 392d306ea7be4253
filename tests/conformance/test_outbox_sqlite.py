"""The SQLite outbox: the shared conformance suite, plus what only it promises (the
service's own statements in the transaction, one writer, one relay per file)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from seawall import ConfigurationError, Context, Event, MemoryTransport, OutboxError, System
from seawall.outbox import Outbox, PollingRelay, SQLiteOutbox
from seawall.testing import OutboxConformance


class Opened(Event, frozen=True):
    account: str


class TestSQLiteOutbox(OutboxConformance):
    @pytest.fixture(autouse=True)
    def _tmp(self, tmp_path: Path) -> None:
        self.tmp = tmp_path

    async def make_outbox(self, *, retention: float | None = None) -> Outbox[Any]:
        return await SQLiteOutbox.open(self.tmp / "service.db", retention=retention)


@pytest_asyncio.fixture
async def ctx() -> AsyncIterator[Context]:
    async with System(transport=MemoryTransport()) as system:
        yield system.context("bank")


@pytest_asyncio.fixture
async def outbox(tmp_path: Path) -> AsyncIterator[SQLiteOutbox]:
    async with await SQLiteOutbox.open(tmp_path / "bank.db") as opened:
        await opened._run(lambda db: db.execute("CREATE TABLE accounts (id TEXT PRIMARY KEY)"))
        yield opened


async def test_the_services_rows_and_its_messages_commit_together(
    outbox: SQLiteOutbox, ctx: Context
) -> None:
    async with outbox.transaction(ctx) as tx:
        assert await tx.execute("INSERT INTO accounts VALUES (?)", "ada") == 1
        await tx.publish(Opened(account="ada"), key="ada")
        assert await tx.fetchone("SELECT id FROM accounts") == ("ada",)

    async def duplicate_account() -> None:
        async with outbox.transaction(ctx) as tx:
            await tx.publish(Opened(account="bob"), key="bob")
            await tx.execute("INSERT INTO accounts VALUES (?)", "bob")
            await tx.execute("INSERT INTO accounts VALUES (?)", "ada")  # the key exists

    with pytest.raises(OutboxError, match="UNIQUE constraint failed") as caught:
        await duplicate_account()
    assert caught.value.__cause__ is not None
    async with outbox.transaction(ctx) as tx:
        assert await tx.fetchall("SELECT id FROM accounts") == [("ada",)]
        assert await tx.run(lambda db: db.execute("SELECT count(*) FROM outbox").fetchone()[0]) == 1


async def test_a_finished_transaction_refuses_statements(
    outbox: SQLiteOutbox, ctx: Context
) -> None:
    async with outbox.transaction(ctx) as tx:
        pass
    with pytest.raises(OutboxError, match="has ended"):
        await tx.execute("SELECT 1")


async def test_a_cancelled_transaction_rolls_back_and_the_next_one_works(
    outbox: SQLiteOutbox, ctx: Context
) -> None:
    entered = asyncio.Event()

    async def slow() -> None:
        async with outbox.transaction(ctx) as tx:
            await tx.execute("INSERT INTO accounts VALUES (?)", "slow")
            await tx.publish(Opened(account="slow"), key="slow")
            entered.set()
            await asyncio.sleep(60)

    task = asyncio.create_task(slow())
    await entered.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    async with outbox.transaction(ctx) as tx:
        assert await tx.fetchall("SELECT id FROM accounts") == []
    assert await outbox.pending() == 0


async def test_one_relay_per_file(tmp_path: Path, outbox: SQLiteOutbox, ctx: Context) -> None:
    async with outbox.transaction(ctx) as tx:
        await tx.publish(Opened(account="ada"), key="ada")
    async with await SQLiteOutbox.open(tmp_path / "bank.db") as other:
        transport = MemoryTransport()
        assert await PollingRelay(outbox, transport).step() == 1
        with pytest.raises(OutboxError, match="another relay already publishes"):
            await PollingRelay(other, transport).step()
        await transport.close()


async def test_bad_settings_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="table prefix"):
        await SQLiteOutbox.open(tmp_path / "x.db", prefix="1bad")
    with pytest.raises(ConfigurationError, match="partitions"):
        await SQLiteOutbox.open(tmp_path / "x.db", partitions=0)
    with pytest.raises(ConfigurationError, match="sync"):
        await SQLiteOutbox.open(tmp_path / "x.db", sync="sometimes")  # type: ignore[arg-type]
    with pytest.raises(OutboxError, match="cannot open"):
        await SQLiteOutbox.open(tmp_path / "missing" / "x.db")
