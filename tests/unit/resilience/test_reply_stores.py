"""Durable reply caches: a service that asks for one answers a request repeated after it
restarted (an empty memory cache) from the store, without running the handler again; on
a SQLite file and on Redis."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from tests.brokers import REDIS, require, scratch_prefix

from seawall import Command, Document, MemoryTransport, Service, System
from seawall.resilience import ReplyStore
from seawall.transports import SqliteReplyStore


class Quote(Command, frozen=True):
    sku: str


class Price(Document, frozen=True):
    cents: int


@pytest_asyncio.fixture(params=["sqlite", pytest.param("redis", marks=pytest.mark.integration)])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[ReplyStore]:
    if request.param == "sqlite":
        sqlite = SqliteReplyStore(tmp_path / "data" / "replies.db", keep=60.0)
        yield sqlite
        await sqlite.close()
        return
    from seawall.transports.redis import RedisReplyStore

    async with scratch_prefix() as prefix:
        redis = RedisReplyStore.connect(require(REDIS), prefix=prefix, keep=60.0)
        yield redis
        await redis.close()


def pricing(store: ReplyStore, runs: list[str]) -> Service:
    service = Service("pricing", reply_store=store)

    @service.command
    async def quote(cmd: Quote) -> Price:
        runs.append(cmd.sku)
        return Price(cents=len(runs) * 100)

    return service


async def test_a_repeat_after_a_restart_is_answered_from_the_store(store: ReplyStore) -> None:
    transport = MemoryTransport()
    runs: list[str] = []
    async with System(transport=transport) as client:
        ctx = client.context()
        request = client.node.envelope(Quote(sku="tea"), source="test", replyto=client.node.inbox)
        async with System(pricing(store, runs), transport=transport) as first:
            await transport.publish("pricing", request)
            [stats] = first.stats().values()
            while stats.handled < 1:
                await ctx.sleep(0.001)
        assert await store.get(request.id) is not None
        # a fresh process: its memory cache is empty, the store is not
        async with System(pricing(store, runs), transport=transport) as restarted:
            await transport.publish("pricing", request)  # the same request id, as a retry
            [stats] = restarted.stats().values()
            while stats.handled + stats.repeats < 1:
                await ctx.sleep(0.001)
    assert runs == ["tea"], "a repeated request ran its handler again after a restart"
    assert (stats.handled, stats.repeats) == (0, 1)


async def test_the_sqlite_store_forgets_old_replies(tmp_path: Path) -> None:
    store = SqliteReplyStore(tmp_path / "replies.db", keep=10.0)
    try:
        await store.put("a", b"old", now=100.0)
        await store.put("b", b"new", now=105.0)
        assert store.purge(now=112.0) == 1
        assert await store.get("a") is None
        assert await store.get("b") == b"new"
    finally:
        await store.close()
