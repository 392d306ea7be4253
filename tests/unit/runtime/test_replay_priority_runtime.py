"""Replay and priority levels through the service runtime, on the durable embedded broker."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest

from seawall import (
    ChannelSpec,
    Command,
    ConfigurationError,
    Context,
    Document,
    Event,
    FromOffsets,
    FromTime,
    Service,
    System,
)
from seawall.transports.embedded import EmbeddedTransport


class Reading(Event, frozen=True):
    n: int


class Job(Command, frozen=True):
    name: str


class Tally:
    """What handlers saw, in order; a test waits (bounded) until enough arrived."""

    def __init__(self) -> None:
        self.items: list[Any] = []
        self._changed = asyncio.Condition()

    async def add(self, item: object) -> None:
        async with self._changed:
            self.items.append(item)
            self._changed.notify_all()

    async def until(self, count: int) -> None:
        async with asyncio.timeout(5), self._changed:
            await self._changed.wait_for(lambda: len(self.items) >= count)


async def test_a_new_group_replays_from_an_offset_or_a_time(tmp_path: Path) -> None:
    transport = EmbeddedTransport(tmp_path)
    async with System(transport=transport) as system:
        ctx = system.context("sensor")
        for n in range(4):
            await ctx.publish(Reading(n=n), channel="readings")
        await asyncio.sleep(0.05)
        cut = time.time()
        await asyncio.sleep(0.05)
        for n in range(4, 6):
            await ctx.publish(Reading(n=n), channel="readings")

    from_offset, from_time = Tally(), Tally()
    audit = Service("audit")

    @audit.subscribe("readings", group="from-offset-3", start=FromOffsets((3,)))
    async def by_offset(event: Reading) -> None:
        await from_offset.add(event.n)

    @audit.subscribe("readings", group="from-cut", start=FromTime(cut))
    async def by_time(event: Reading) -> None:
        await from_time.add(event.n)

    async with System(audit, transport=transport):
        await from_offset.until(3)
        await from_time.until(2)
        await asyncio.sleep(0.1)  # nothing more comes
    await transport.close()
    assert sorted(from_offset.items) == [3, 4, 5]
    assert sorted(from_time.items) == [4, 5]


async def test_sends_with_a_priority_are_handled_higher_levels_first(tmp_path: Path) -> None:
    transport = EmbeddedTransport(tmp_path)
    await transport.declare(ChannelSpec(name="jobs", priorities=3))
    async with System(transport=transport) as system:
        ctx = system.context("planner")
        for level, name in [(0, "sweep"), (2, "fire"), (1, "mail"), (0, "dust"), (2, "flood")]:
            await ctx.send("jobs", Job(name=name), priority=level)

    handled = Tally()
    worker = Service("worker", concurrency=1)

    @worker.subscribe("jobs")
    async def work(job: Job, ctx: Context) -> None:
        await handled.add(job.name)

    async with System(worker, transport=transport):
        await handled.until(5)
    await transport.close()
    assert handled.items == ["fire", "flood", "mail", "sweep", "dust"]


def test_handlers_of_one_group_must_agree_on_where_it_starts() -> None:
    service = Service("audit")

    @service.subscribe("readings", start="latest")
    async def first(event: Reading) -> None: ...

    with pytest.raises(ConfigurationError, match="different starts"):

        @service.subscribe("readings", start=FromTime(0.0))
        async def second(event: Job) -> None: ...


class Quote(Command, frozen=True):
    item: str


class Price(Document, frozen=True):
    cents: int


async def test_a_service_that_does_not_sync_requests_declares_so_and_still_answers(
    tmp_path: Path,
) -> None:
    pricing = Service("pricing", sync_requests=False)

    @pricing.command
    async def quote(cmd: Quote) -> Price:
        return Price(cents=len(cmd.item))

    # sync=batch with an enormous window: were the requests held for company (after the
    # burst of sends below), the round trips would wait for it
    transport = EmbeddedTransport(tmp_path, sync="batch", window=30.0)
    async with System(pricing, transport=transport) as system:
        layout = (await transport.broker())._channels["pricing"].spec
        assert layout.sync_requests is False
        ctx = system.context()
        await asyncio.gather(*(ctx.send("pricing", Quote(item="x" * n)) for n in range(20)))
        answer = await asyncio.wait_for(
            ctx.request("pricing", Quote(item="lamp"), returns=Price), 10.0
        )
        assert answer == Price(cents=4)
    await transport.close()
