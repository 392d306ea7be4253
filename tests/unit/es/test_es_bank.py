"""The bank example runs and keeps its books; the projections CLI shows and rebuilds it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from examples.bank.__main__ import main
from examples.bank.domain import Account, make_codec

from seawall.es import NewEvent, Repository, SQLiteEventStore

ROOT = Path(__file__).resolve().parents[3]


async def test_bank_example_keeps_its_books(tmp_path: Path) -> None:
    summary = await main(tmp_path / "bank.db")
    assert summary.balances == {"ada": 6_700, "bob": 10_100}
    assert summary.refused == ["account bob holds 10000, not 50000"]
    assert summary.stored == summary.published == 15


async def test_a_version_1_deposit_is_read_in_cents(tmp_path: Path) -> None:
    await main(tmp_path / "bank.db")
    async with await SQLiteEventStore.open(tmp_path / "bank.db") as store:
        repo = Repository(store, make_codec())
        before = (await repo.load(Account, "ada")).balance
        version = len(await store.read_stream("account-ada"))
        old = NewEvent("old-1", "bank.Deposited", "1.0.0", b'{"euros": 3}')
        await store.append("account-ada", [old], version)
        assert (await repo.load(Account, "ada")).balance == before + 300


def seawall(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "120"}
    return subprocess.run(
        [sys.executable, "-m", "seawall", "projections", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )


async def test_projections_cli_status_and_rebuild(tmp_path: Path) -> None:
    db = tmp_path / "bank.db"
    await main(db)
    store = f"sqlite://{db}"
    shown = seawall("status", "--store", store)
    assert shown.returncode == 0, shown.stderr
    assert "balances" in shown.stdout
    assert "outbox:bank.events" in shown.stdout
    rebuilt = seawall(
        "rebuild", "balances", "--store", store, "--app", "examples.bank.domain:projections"
    )
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert "rebuilt balances: 15 events" in rebuilt.stdout
    assert "lag now 0" in rebuilt.stdout
    assert "events/s" in rebuilt.stderr  # the progress bar, with its rate
    async with await SQLiteEventStore.open(db) as opened:
        assert await opened.query("SELECT account, balance FROM balances ORDER BY 1") == [
            ("ada", 6_700),
            ("bob", 10_100),
        ]
    unknown = seawall(
        "rebuild", "nope", "--store", store, "--app", "examples.bank.domain:projections"
    )
    assert unknown.returncode != 0
    assert "no projection named 'nope'; known: ['balances']" in unknown.stderr
    bad = seawall("status", "--store", "mysql://x")
    assert bad.returncode != 0
    assert "is not understood" in bad.stderr
