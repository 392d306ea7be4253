"""The memory transport: what only it does (the shared suites run from ``test_matrix.py``)."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from seawall import ChannelSpec, ConnectionLost, TransportClosed
from seawall.testing._conformance import Inbox, ids, make_message
from seawall.transports.memory import MemoryTransport


async def test_ephemeral_channel_goes_when_its_last_subscriber_leaves() -> None:
    transport = MemoryTransport(publish_timeout=None)
    name = f"inbox.{uuid.uuid4().hex}"
    try:
        await transport.declare(ChannelSpec(name=name, ephemeral=True, max_messages=2))
        first = await transport.subscribe(name, group="me")
        second = await transport.subscribe(name, group="me")
        await first.close()
        kept = make_message(0)
        await transport.publish(name, kept)
        async with Inbox(second, patience=1.0) as inbox:
            assert ids(await inbox.collect(1)) == [kept.id]  # one subscriber left: kept
            await second.close()
            assert await inbox.finish() == ([], None)

        # Gone: publishes return at once (the bound of 2 would block them if the
        # messages were held) and nobody ever receives them.
        dropped = [make_message(i) for i in range(5)]
        async with asyncio.timeout(1.0):
            for message in dropped:
                await transport.publish(name, message)
        late = await transport.subscribe(name, group="me")
        async with Inbox(late, patience=1.0) as inbox:
            assert await inbox.quiet(0.05) == []
            fresh = make_message(9)
            await transport.publish(name, fresh)
            assert ids(await inbox.collect(1)) == [fresh.id]
    finally:
        await transport.close()


async def test_closed_transport_refuses_work_and_ends_subscriptions() -> None:
    transport = MemoryTransport()
    name = f"orders.{uuid.uuid4().hex}"
    sub = await transport.subscribe(name, group="workers")
    await transport.publish(name, make_message(0))
    async with Inbox(sub, patience=1.0) as inbox:
        await inbox.collect(1)
        await transport.close()
        assert await inbox.finish() == ([], None)
    with pytest.raises(TransportClosed):
        await transport.publish(name, make_message(1))
    with pytest.raises(TransportClosed):
        await transport.subscribe(name, group="workers")
    with pytest.raises(TransportClosed):
        await transport.declare(ChannelSpec(name=f"other.{uuid.uuid4().hex}"))


async def test_has_channel_knows_declared_and_used_channels() -> None:
    transport = MemoryTransport()
    assert not transport.has_channel("orders")
    await transport.declare(ChannelSpec(name="orders"))
    await transport.publish("payments", make_message())
    assert transport.has_channel("orders")
    assert transport.has_channel("payments")
    assert not transport.has_channel("shipping")
    await transport.close()


async def test_a_broken_link_ends_a_bulk_taken_batch_and_returns_its_rest_uncounted() -> None:
    # The delivery loop takes up to its credit at once; once the link breaks it
    # must not hand out what is left of that batch, and those were never
    # delivered: they come again elsewhere as first attempts.
    transport = MemoryTransport(publish_timeout=None)
    try:
        sent = [make_message(n) for n in range(6)]
        for message in sent:
            await transport.publish("jobs", message)
        first = aiter(await transport.subscribe("jobs", group="g", prefetch=10))
        got = await anext(first)
        transport.disconnect()
        with pytest.raises(ConnectionLost):
            await anext(first)
        second = aiter(await transport.subscribe("jobs", group="g", prefetch=10))
        redelivered = [await asyncio.wait_for(anext(second), 5) for _ in range(6)]
        assert sorted(ids(redelivered)) == sorted(ids(sent))
        attempts = {d.message.id: d.attempt for d in redelivered}
        assert got.message.id == sent[0].id
        assert attempts.pop(got.message.id) == 2  # handed on once already
        assert set(attempts.values()) == {1}
    finally:
        await transport.close()
