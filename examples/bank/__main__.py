"""``python -m examples.bank [DB]``: a few accounts, a refused withdrawal, the read model,
a rebuild, and the outbox publishing every event to ``bank.events``."""

from __future__ import annotations

import asyncio
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import cast

from seawall import MemoryTransport
from seawall.es import (
    OutboxRelay,
    ProjectionRunner,
    Repository,
    SnapshotPolicy,
    SQLiteEventStore,
)

from .domain import Account, Balances, InsufficientFunds, make_codec


@dataclass
class Summary:
    balances: dict[str, int]
    refused: list[str]
    published: int
    stored: int


async def main(path: Path) -> Summary:
    codec = make_codec()
    transport = MemoryTransport()
    async with await SQLiteEventStore.open(path) as store:
        repo = Repository(store, codec, snapshots=SnapshotPolicy(every=5))
        for id, owner in (("ada", "Ada"), ("bob", "Bob")):
            account = Account(id)
            account.open(owner)
            account.deposit(10_000)
            await repo.save(account)
        refused = []
        for id, amount in (("ada", 2_500), ("bob", 50_000), ("ada", 1_000), ("bob", 100)):
            account = await repo.load(Account, id)
            try:
                account.withdraw(amount)
            except InsufficientFunds as exc:
                refused.append(str(exc))
                continue
            await repo.save(account)
        for _ in range(4):  # concurrent saves: loaded, changed and saved side by side
            accounts = [await repo.load(Account, id) for id in ("ada", "bob")]
            for account in accounts:
                account.deposit(50)
            await asyncio.gather(*(repo.save(account) for account in accounts))

        runner = ProjectionRunner(store, codec, Balances())
        await runner.catch_up()
        await runner.rebuild()  # from position 0: same result, nothing doubled
        rows = await store.query("SELECT account, balance FROM balances ORDER BY account")
        balances = {str(account): cast(int, balance) for account, balance in rows}

        sub = await transport.subscribe("bank.events", group="audit")
        published = await OutboxRelay(
            store, transport, channel="bank.events", source="bank"
        ).drain()
        await sub.close()
        stored = await store.head()
    await transport.close()
    return Summary(balances, refused, published, stored)


def run() -> None:
    if len(sys.argv) > 1:
        summary = asyncio.run(main(Path(sys.argv[1])))
    else:
        with tempfile.TemporaryDirectory() as tmp:
            summary = asyncio.run(main(Path(tmp) / "bank.db"))
    for account, balance in summary.balances.items():
        print(f"{account}: {balance / 100:.2f} EUR")
    for reason in summary.refused:
        print(f"refused: {reason}")
    print(f"{summary.stored} events stored, {summary.published} published to bank.events")


if __name__ == "__main__":
    run()
