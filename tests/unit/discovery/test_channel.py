"""Announcing on and listening to the registry channel, on the virtual clock.

An announcer and a reader over the memory transport: the reader hears the beats,
forgets an instance that stops beating after the expiry, and deletes the group
the silent instance's own reader left behind (it was killed, not stopped).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from seawall import ConnectionLost, MemoryTransport, Subscription, VirtualClock
from seawall.discovery import (
    EXPIRY,
    HEARTBEAT,
    REGISTRY_CHANNEL,
    Announcement,
    Announcer,
    RegistryReader,
)
from seawall.discovery.channel import KNOWN_CHANNEL, PRUNE_AFTER
from seawall.discovery.roster import Roster
from seawall.transports.embedded import EmbeddedTransport


async def drain(subscription: Subscription) -> None:
    async for delivery in subscription:
        await subscription.ack(delivery)


@pytest.fixture
async def clock() -> AsyncIterator[VirtualClock]:
    clock = VirtualClock()
    jumping = asyncio.create_task(clock.run_autojump())
    yield clock
    jumping.cancel()


async def test_a_killed_instance_is_forgotten_and_its_reader_group_deleted(
    clock: VirtualClock,
) -> None:
    transport = MemoryTransport(clock=clock)
    describe = [Announcement(service="s", instance="killed")]
    announcer = Announcer(transport, clock, lambda: describe)
    reader = RegistryReader(transport, clock, instance="watcher")
    killed_reader = await transport.subscribe(REGISTRY_CHANNEL, group="registry.killed")
    async with asyncio.TaskGroup() as tasks:
        beating = tasks.create_task(announcer.run())
        listening = tasks.create_task(reader.run())
        await clock.sleep(HEARTBEAT * 2.5)
        assert [e.announcement.instance for e in reader.roster.live(clock.time())] == ["killed"]
        assert announcer.beats == 3
        beating.cancel()  # as kill -9 would: no leaving said
        await clock.sleep(EXPIRY + 1.0)
        assert reader.roster.live(clock.time()) == []
        assert reader.roster.known("s")  # gone, but it existed
        await clock.sleep(PRUNE_AFTER)  # silent for long: it was killed, its group goes
        with pytest.raises(ConnectionLost):  # its group was deleted under it
            await drain(killed_reader)
        listening.cancel()
    await transport.close()


async def test_a_fresh_reader_learns_past_services_from_the_known_channel(
    clock: VirtualClock,
) -> None:
    transport = MemoryTransport(clock=clock)
    announcer = Announcer(transport, clock, lambda: [Announcement(service="s", instance="i")])
    await announcer.beat(known=True)  # as on its first beat
    await announcer.beat(leaving=True)
    await clock.sleep(3600)  # long gone: no beat of it is replayed, its known entry is
    own = Announcer(transport, clock, lambda: [Announcement(service="me", instance="me")])
    reader = RegistryReader(
        transport,
        clock,
        instance="me",
        own=lambda a: a.instance == "me",
        roster=Roster(startup_grace=0.0),  # the grace is the roster's own test
    )
    async with asyncio.TaskGroup() as tasks:
        listening = tasks.create_task(reader.run())
        await reader.ready.wait()
        assert not reader.roster.ready(clock.time())  # not caught up yet: refuses nothing
        await own.beat(known=True)
        await clock.sleep(0.1)
        assert reader.roster.ready(clock.time())  # read its own beat back
        assert reader.roster.judge(clock.time(), "s") == "absent"
        assert reader.roster.judge(clock.time(), "other") == "unknown"
        listening.cancel()
    await transport.close()


async def test_the_groups_of_a_reader_that_never_deleted_them_expire(
    clock: VirtualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    transport = EmbeddedTransport(None, clock=clock)  # a broker that honours idle_expiry
    broker = await transport.broker()
    reader = RegistryReader(transport, clock, instance="killed", group_expiry=60.0)
    monkeypatch.setattr(reader, "_delete", _never)  # kill -9: its delete never runs
    reading = asyncio.create_task(reader.run())
    await reader.ready.wait()
    channels = [REGISTRY_CHANNEL, KNOWN_CHANNEL]

    def groups() -> list[set[str]]:
        return [set(broker._channels[channel].groups) for channel in channels]

    assert groups() == [{"registry.killed"}] * 2
    reading.cancel()
    await asyncio.wait({reading})
    await clock.sleep(59.0)
    assert groups() == [{"registry.killed"}] * 2, "gone before its expiry"
    await clock.sleep(2.0)
    assert groups() == [set(), set()]
    await transport.close()


async def _never(channels: object, group: str) -> None:
    """A reader's cleanup that never happens."""
