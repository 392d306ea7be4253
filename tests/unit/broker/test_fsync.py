"""One fsync vocabulary: the broker, its CLI, the embedded URL and the event stores share it."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from seawall import ConfigurationError
from seawall._broker.store_writer import StoreWriter
from seawall._cli import main
from seawall._fsync import SYNC_POLICIES, parse_sync
from seawall.es.sqlite import SQLiteEventStore
from seawall.transports import EmbeddedTransport, connect


def test_the_policies_are_always_batch_none() -> None:
    assert SYNC_POLICIES == ("always", "batch", "none")
    for policy in SYNC_POLICIES:
        assert parse_sync(policy, where="x") == policy


def test_a_wrong_word_names_where_it_came_from_and_the_words() -> None:
    with pytest.raises(ConfigurationError, match=r"seawall.toml: sync must be one of always, b"):
        parse_sync("fast", where="seawall.toml")
    with pytest.raises(ConfigurationError, match="got 'full'"):
        parse_sync("full", where="seawall broker")  # the old words only where they were used


def test_the_event_stores_old_spellings_still_read() -> None:
    assert parse_sync("full", where="x", old_spellings=True) == "always"
    assert parse_sync("normal", where="x", old_spellings=True) == "none"


@pytest.mark.parametrize(
    ("sync", "pragma"),
    [("always", 2), ("batch", 2), ("none", 1), ("full", 2), ("normal", 1), (None, 2)],
)
async def test_the_sqlite_event_store_maps_the_policy_onto_pragma_synchronous(
    tmp_path: Path, sync: str | None, pragma: int
) -> None:
    options = {} if sync is None else {"sync": sync}
    async with await SQLiteEventStore.open(tmp_path / "e.db", **options) as store:
        assert store.sync == parse_sync(sync or "always", where="", old_spellings=True)
        reader = store._reader
        assert reader is not None
        assert reader.execute("PRAGMA synchronous").fetchone()[0] == pragma  # 2 FULL, 1 NORMAL


async def test_the_embedded_url_gives_the_store_its_policy(tmp_path: Path) -> None:
    transport = connect(f"embedded://{tmp_path}?sync=none&window=0.01")
    assert isinstance(transport, EmbeddedTransport)
    broker = await transport.broker()
    try:
        storage = broker.storage
        assert isinstance(storage, StoreWriter)
        assert storage.policy == "none"
    finally:
        await transport.close()


def test_the_broker_cli_offers_the_same_words() -> None:
    runner = CliRunner()
    usage = runner.invoke(main, ["broker", "--help"]).output
    assert "[always|batch|none]" in usage
    refused = runner.invoke(main, ["broker", "--data", "d", "--listen", ":1", "--sync", "full"])
    assert refused.exit_code != 0
    assert "'full' is not one of 'always', 'batch', 'none'" in refused.output
