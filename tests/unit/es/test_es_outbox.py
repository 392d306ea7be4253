"""The outbox relay: stored events reach the event channel in order, message id =
event id, at least once across a crash between publish and checkpoint."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from seawall import ConcurrencyError, Event, MemoryTransport, Message, connect
from seawall.es import EventCodec, OutboxRelay, SQLiteEventStore
from seawall.testing._conformance import Inbox


class Deposited(Event, frozen=True):
    type_name = "bank.Deposited"
    type_version = "1.2.0"
    amount: int


CODEC = EventCodec(Deposited)


@pytest_asyncio.fixture
async def store(tmp_path: Path) -> AsyncIterator[SQLiteEventStore]:
    async with await SQLiteEventStore.open(tmp_path / "e.db") as opened:
        for n, stream in enumerate(["acct-a", "acct-b", "acct-a"]):
            version = len(await opened.read_stream(stream))
            await opened.append(stream, [CODEC.encode(Deposited(amount=n))], version)
        yield opened


@pytest_asyncio.fixture
async def transport() -> AsyncIterator[MemoryTransport]:
    opened = MemoryTransport()
    yield opened
    await opened.close()


async def test_relay_publishes_stored_events_in_order_with_their_ids(
    store: SQLiteEventStore, transport: MemoryTransport
) -> None:
    sub = await transport.subscribe("bank.events", group="audit")
    relay = OutboxRelay(store, transport, channel="bank.events", source="bank")
    assert await relay.drain() == 3
    assert await relay.drain() == 0
    async with Inbox(sub, patience=5) as inbox:
        got = [d.message for d in await inbox.collect(3)]
        assert await inbox.quiet(0.05) == []
    stored = await store.read_all()
    assert [m.id for m in got] == [r.id for r in stored]
    first = got[0]
    assert (first.type, first.kind, first.source, first.subject, first.partitionkey) == (
        "bank.Deposited",
        "event",
        "bank",
        "acct-a",
        "acct-a",
    )
    assert first.dataschema == "urn:seawall:bank.Deposited:1.2.0"
    assert CODEC.decode(stored[0]) == Deposited(amount=0)
    assert first.data == stored[0].data
    assert await store.checkpoint(relay.name) == stored[-1].position


class FailingTransport(MemoryTransport):
    """Loses its broker link after a number of publishes."""

    def __init__(self, inner: MemoryTransport, fail_after: int) -> None:
        super().__init__()
        self.inner, self.left = inner, fail_after

    async def publish(self, channel: str, message: Message, **options: object) -> None:
        if self.left == 0:
            raise ConnectionError("broker link lost")
        self.left -= 1
        await self.inner.publish(channel, message)


async def test_crash_after_publish_before_checkpoint_publishes_again_same_ids(
    store: SQLiteEventStore, transport: MemoryTransport
) -> None:
    sub = await transport.subscribe("bank.events", group="audit")
    broken = FailingTransport(transport, fail_after=2)
    with pytest.raises(ConnectionError):
        await OutboxRelay(store, broken, channel="bank.events", source="bank").step()
    await broken.close()
    relay = OutboxRelay(store, transport, channel="bank.events", source="bank")
    assert await store.checkpoint(relay.name) == 0
    assert await relay.drain() == 3
    async with Inbox(sub, patience=5) as inbox:
        ids = [d.message.id for d in await inbox.collect(5)]
    stored = [r.id for r in await store.read_all()]
    assert ids == stored[:2] + stored  # at least once, in order; repeats share their id
    assert list(dict.fromkeys(ids)) == stored  # deduplicated by id: each exactly once


async def test_relay_follows_new_events(
    store: SQLiteEventStore, transport: MemoryTransport
) -> None:
    sub = await transport.subscribe("bank.events", group="audit")
    relay = OutboxRelay(store, transport, channel="bank.events", source="bank", poll=0.01)
    task = asyncio.create_task(relay.run())
    try:
        async with Inbox(sub, patience=5) as inbox:
            await inbox.collect(3)
            await store.append("acct-c", [CODEC.encode(Deposited(amount=9))], 0)
            [late] = await inbox.collect(1)
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert late.message.subject == "acct-c"


async def test_two_relays_on_one_channel_do_not_interleave(
    store: SQLiteEventStore, transport: MemoryTransport
) -> None:
    one = OutboxRelay(store, transport, channel="bank.events", source="bank")
    await one.step()
    with pytest.raises(ConcurrencyError):
        await store.commit_projection(one.name, 0, 1, [])


async def test_relay_over_the_durable_embedded_broker(
    store: SQLiteEventStore, tmp_path: Path
) -> None:
    broker = connect(f"embedded://{tmp_path / 'broker'}")
    try:
        sub = await broker.subscribe("bank.events", group="audit")
        relay = OutboxRelay(store, broker, channel="bank.events", source="bank")
        assert await relay.drain() == 3
        async with Inbox(sub, patience=10) as inbox:
            got = await inbox.collect(3)
            for delivery in got:
                await sub.ack(delivery)
        assert [d.message.id for d in got] == [r.id for r in await store.read_all()]
    finally:
        await broker.close()
