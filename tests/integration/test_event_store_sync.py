"""The PostgreSQL event store speaks the one fsync vocabulary, as synchronous_commit."""

from __future__ import annotations

import uuid

import pytest
from tests.brokers import POSTGRES, require

from seawall import ConfigurationError
from seawall.es.postgres import PostgresEventStore

pytestmark = pytest.mark.integration


@pytest.mark.parametrize(("sync", "setting"), [("always", "on"), ("batch", "on"), ("none", "off")])
async def test_the_policy_is_the_connections_synchronous_commit(sync: str, setting: str) -> None:
    store = await PostgresEventStore.open(
        require(POSTGRES),
        prefix=f"t{uuid.uuid4().hex[:10]}_",
        sync=sync,  # type: ignore[arg-type]
    )
    try:
        [(value,)] = await store.query("SHOW synchronous_commit")
        assert value == setting
    finally:
        await store.drop()
        await store.close()


async def test_a_wrong_policy_is_refused_before_connecting() -> None:
    with pytest.raises(ConfigurationError, match="sync must be one of always, batch, none"):
        await PostgresEventStore.open("postgresql://nowhere:1/x", sync="fast")  # type: ignore[arg-type]
