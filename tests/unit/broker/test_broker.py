"""Broker behaviour beyond the shared conformance suite: priorities, replay, group expiry."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import msgspec
import pytest

from seawall import ChannelSpec, ConfigurationError, FromOffsets, FromTime, VirtualClock
from seawall._broker.engine import BrokerLimits
from seawall._broker.pages import PAGE
from seawall.testing._conformance import Inbox, ids, make_message
from seawall.transports.embedded import EmbeddedTransport


async def test_higher_priority_first_and_fifo_within_a_level() -> None:
    transport = EmbeddedTransport(None)
    await transport.declare(ChannelSpec(name="work", priorities=3))
    sent = {level: [make_message(level * 10 + i) for i in range(3)] for level in (0, 2, 1)}
    for level, messages in sent.items():
        for message in messages:
            await transport.publish("work", message, priority=level)
    await transport.publish("work", make_message(99), priority=7)  # clamped to the top level
    sub = await transport.subscribe("work", group="workers", prefetch=1)
    async with Inbox(sub, patience=2.0) as inbox:
        got = []
        for _ in range(10):
            (delivery,) = await inbox.collect(1)
            got.append(delivery)
            await sub.ack(delivery)
    expected = [*ids(sent[2]), "", *ids(sent[1]), *ids(sent[0])]
    assert [d.message.data for d in got][3] == b"99"
    assert [d.message.id for i, d in enumerate(got) if i != 3] == [e for e in expected if e]
    assert {d.partition for d in got} == {0}
    await transport.close()


async def test_a_late_high_priority_message_overtakes_waiting_work() -> None:
    transport = EmbeddedTransport(None)
    await transport.declare(ChannelSpec(name="work", priorities=2))
    for i in range(5):
        await transport.publish("work", make_message(i))
    sub = await transport.subscribe("work", group="workers", prefetch=1)
    async with Inbox(sub, patience=2.0) as inbox:
        (first,) = await inbox.collect(1)
        urgent = make_message(100)
        await transport.publish("work", urgent, priority=1)
        await sub.nack(first)  # returned work keeps its place in its own level
        (second,) = await inbox.collect(1)
        assert second.message.id == urgent.id
        await sub.ack(second)
        (third,) = await inbox.collect(1)
        assert third.message.id == first.message.id
        assert third.attempt == 2
    await transport.close()


def test_priority_levels_are_bounded_and_need_one_partition() -> None:
    with pytest.raises(ConfigurationError, match="priorities must be 1 to 10"):
        ChannelSpec(name="work", priorities=11)
    with pytest.raises(ConfigurationError, match="single partition"):
        ChannelSpec(name="work", priorities=2, partitions=4)


async def test_a_new_group_replays_from_given_offsets(tmp_path: Path) -> None:
    transport = EmbeddedTransport(tmp_path)
    await transport.declare(ChannelSpec(name="events", partitions=2))
    messages = [make_message(i, key=f"k{i}") for i in range(20)]
    for message in messages:
        await transport.publish("events", message)
    sub = await transport.subscribe("events", group="audit", start=FromOffsets((3, 100)))
    async with Inbox(sub, patience=2.0) as inbox:
        got = await inbox.collect(1)
        rest = await inbox.quiet(0.1)
    by_partition = [*got, *rest]
    assert {d.partition for d in by_partition} == {0}  # partition 1 starts past its end
    count0 = sum(1 for m in messages if _partition(m.partitionkey) == 0)
    assert len(by_partition) == count0 - 3
    with pytest.raises(ConfigurationError, match="names 1 offsets"):
        await transport.subscribe("events", group="other", start=FromOffsets((0,)))
    await transport.close()
    await transport.close()


async def test_a_broker_in_memory_replays_what_it_keeps_from_a_time() -> None:
    clock = VirtualClock()
    transport = EmbeddedTransport(None, clock=clock)
    before, after = [make_message(i) for i in range(70)], [make_message(i) for i in range(70, 72)]
    for message in before:
        await transport.publish("events", message)
    clock.advance(1.0)
    cut = clock.time()
    for message in after:
        await transport.publish("events", message)
    timed = await transport.subscribe("events", group="timed", start=FromTime(cut))
    first = await transport.subscribe("events", group="first", start=FromTime(0.0))
    async with Inbox(timed, patience=2.0) as inbox, Inbox(first, patience=2.0) as everything:
        assert ids(await inbox.collect(2)) == ids(after)
        for _ in range(9):  # the 64th ack trims what both groups settled
            for delivery in await everything.collect(8):
                await first.ack(delivery)
    # what is left: offsets 64 on, with their times still beside them
    late = await transport.subscribe("events", group="late", start=FromTime(cut))
    early = await transport.subscribe("events", group="early", start=FromTime(0.0))
    async with Inbox(late, patience=2.0) as inbox, Inbox(early, patience=2.0) as kept:
        assert ids(await inbox.collect(2)) == ids(after)
        assert ids(await kept.collect(8)) == ids(before[64:] + after)
        assert await kept.quiet(0.05) == []
    await transport.close()


def _partition(key: str | None) -> int:
    from seawall._transport import partition_for

    return partition_for(key, 2)


async def test_a_stalled_consumer_keeps_broker_memory_bounded(tmp_path: Path) -> None:
    tail = 100
    limits = BrokerLimits(tail=tail)
    transport = EmbeddedTransport(tmp_path / "data", sync="none", limits=limits)
    await transport.declare(ChannelSpec(name="backlog", max_messages=100_000))
    stalled = await transport.subscribe("backlog", group="stalled", prefetch=8)
    stalled_inbox = Inbox(stalled, patience=2.0)
    messages = [make_message(i) for i in range(3_000)]
    async with stalled_inbox:
        for message in messages:
            await transport.publish("backlog", message)
        await stalled_inbox.collect(8)  # took its prefetch, then reads nothing more
        broker = await transport.broker()
        # Once written (sync=none acknowledged before that): the tail plus the one
        # page the stalled group read; the rest is on disk only.
        for _ in range(200):
            if broker.held() <= tail + PAGE:
                break
            await asyncio.sleep(0.01)
        assert broker.held() <= tail + PAGE < len(messages)

        # A new group reads the whole backlog from disk, a page at a time, in order.
        late = await transport.subscribe("backlog", group="late", prefetch=64)
        got = []
        async with Inbox(late, patience=5.0) as inbox:
            while len(got) < len(messages):
                batch = await inbox.collect(1)
                got.extend(batch)
                await late.ack(batch[0])
        assert ids(got) == ids(messages)
        assert broker.held() <= tail + 4 * PAGE
    await transport.close()


async def test_a_publisher_that_leaves_before_the_commit_loses_nothing(tmp_path: Path) -> None:
    # A session cancels its publishes when its client vanishes; the write goes on.
    # Dropping the staged entry then (as on a failed write) hid it from consumers and
    # made the next publish to that log refuse to reuse its offset.
    transport = EmbeddedTransport(tmp_path / "data", sync="always")
    await transport.declare(ChannelSpec(name="orders"))
    left, stays = make_message(1), make_message(2)
    leaving = asyncio.create_task(transport.publish("orders", left))
    await asyncio.sleep(0)  # staged and queued for the writer, not yet committed
    leaving.cancel()
    await transport.publish("orders", stays)
    sub = await transport.subscribe("orders", group="billing")
    async with Inbox(sub, patience=2.0) as inbox:
        assert ids(await inbox.collect(2)) == ids([left, stays])
    await transport.close()


async def test_a_deleted_channel_and_group_stay_deleted_after_a_restart(tmp_path: Path) -> None:
    transport = EmbeddedTransport(tmp_path)
    await transport.declare(ChannelSpec(name="gone", partitions=2))
    await transport.declare(ChannelSpec(name="kept"))
    for channel in ("gone", "kept"):
        await transport.publish(channel, make_message(1))
    await transport.publish("gone", make_message(2), not_before=4e9)  # delayed: goes too
    for group in ("doomed", "staying"):
        sub = await transport.subscribe("kept", group=group)
        await sub.close()
    await transport.delete("gone")
    await transport.delete("kept", group="doomed")
    await transport.close()

    again = EmbeddedTransport(tmp_path)
    broker = await again.broker()
    assert not broker.has_channel("gone")
    assert set(broker._channels["kept"].groups) == {"staying"}
    assert broker._scheduled == []
    sub = await again.subscribe("gone", group="workers")  # a new, empty channel
    async with Inbox(sub, patience=2.0) as inbox:
        assert await inbox.quiet(0.05) == []
    await again.close()


async def test_requests_on_a_channel_that_does_not_sync_them_wait_for_no_fsync_group(
    tmp_path: Path,
) -> None:
    # sync=batch with an enormous window: after a group with company the writer lingers,
    # but a request (reply channel and deadline) on a channel with sync_requests=False
    # needs no fsync, so nothing holds it back.
    transport = EmbeddedTransport(tmp_path / "data", sync="batch", window=30.0)
    await transport.declare(ChannelSpec(name="quotes", sync_requests=False))
    await asyncio.gather(*(transport.publish("quotes", make_message(n)) for n in range(50)))
    deadline = datetime.now(UTC) + timedelta(seconds=5)
    request = msgspec.structs.replace(make_message(50), replyto="_inbox.me", deadline=deadline)
    await asyncio.wait_for(transport.publish("quotes", request), 10.0)
    sub = await transport.subscribe("quotes", group="pricing")
    async with Inbox(sub, patience=2.0) as inbox:
        assert ids(await inbox.collect(51))[-1] == request.id
    await transport.close()


async def test_an_idle_group_expires_and_its_expiry_survives_a_restart(tmp_path: Path) -> None:
    clock = VirtualClock()
    transport = EmbeddedTransport(tmp_path, clock=clock)
    await transport.declare(ChannelSpec(name="beats"))
    for group, expiry in (("left", 0.5), ("lasting", None), ("member", 0.5)):
        sub = await transport.subscribe("beats", group=group, idle_expiry=expiry)
        if group != "member":
            await sub.close()
    await transport.close()  # before "left" expired: the next broker finds it

    again = EmbeddedTransport(tmp_path, clock=clock)
    broker = await again.broker()

    def groups() -> set[str]:
        return set(broker._channels["beats"].groups)

    assert groups() == {"left", "lasting", "member"}
    member = await again.subscribe("beats", group="member")  # the expiry stays the group's
    await _pass(clock, 0.4)
    assert groups() == {"left", "lasting", "member"}, "expired early"
    await _pass(clock, 0.2)  # idle since the restart, and then its expiry
    await _until(lambda: groups() == {"lasting", "member"})
    await member.close()
    await _pass(clock, 0.4)
    assert groups() == {"lasting", "member"}, "expired early"
    await _pass(clock, 0.2)
    await _until(lambda: groups() == {"lasting"})
    await again.close()

    third = EmbeddedTransport(tmp_path, clock=clock)
    assert set((await third.broker())._channels["beats"].groups) == {"lasting"}
    await third.close()


async def _pass(clock: VirtualClock, seconds: float) -> None:
    """Move ``clock`` on and give the broker a moment to act on it."""
    clock.advance(seconds)
    await asyncio.sleep(0.02)


async def _until(done: Callable[[], bool]) -> None:
    """Return once ``done()`` holds, polling; fail after 2 s."""
    for _ in range(400):
        if done():
            return
        await asyncio.sleep(0.005)
    raise AssertionError("still not so after 2 s")
