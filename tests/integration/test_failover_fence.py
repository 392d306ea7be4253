"""A handler of a partitioned service gets the fence of the lease its message was read
under (``ctx.fence``), and an event-store append carrying it is accepted from the owner
and refused once a newer owner of that partition wrote (Redis, real leases)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from tests.brokers import REDIS, require, scratch_prefix

from seawall import Command, Context, Fence, Service, StaleEpoch, System
from seawall.es import NewEvent, SQLiteEventStore
from seawall.transports.redis import RedisTransport

pytestmark = pytest.mark.integration


class Bill(Command, frozen=True):
    order: str


async def test_a_partitioned_handler_writes_under_its_lease(tmp_path: Path) -> None:
    url = require(REDIS)
    store = await SQLiteEventStore.open(tmp_path / "events.db")
    fences: dict[str, Fence | None] = {}
    done = asyncio.Event()
    billing = Service("billing", partitions=4)

    @billing.command
    async def bill(command: Bill, ctx: Context) -> None:
        fences[command.order] = ctx.fence
        event = NewEvent(f"e-{command.order}", "billing.Billed", "1.0.0", b"{}")
        await store.append(f"order-{command.order}", [event], 0, fence=ctx.fence)
        if len(fences) == 8:
            done.set()

    try:
        async with scratch_prefix() as prefix:
            transport = RedisTransport(url, prefix=prefix)
            async with System(billing, transport=transport) as system:
                ctx = system.context()
                for n in range(8):
                    await ctx.send("billing", Bill(order=str(n)), key=str(n))
                async with asyncio.timeout(10):
                    await done.wait()
            await transport.close()
        held = [fence for fence in fences.values() if fence is not None]
        assert len(held) == 8, f"every handler of a partitioned service gets a fence: {fences}"
        assert {f.scope.rsplit("/", 1)[0] for f in held} == {"billing/billing"}
        assert all(f.epoch > 0 for f in held)
        # a newer owner of one of those partitions wrote: the old lease's writes are refused
        old = held[0]
        await store.append(
            "order-x",
            [NewEvent("e-x", "billing.Billed", "1.0.0", b"{}")],
            0,
            fence=Fence(old.scope, old.epoch + 1),
        )
        with pytest.raises(StaleEpoch):
            await store.append(
                "order-0", [NewEvent("e-y", "billing.Billed", "1.0.0", b"{}")], 1, fence=old
            )
    finally:
        await store.close()
