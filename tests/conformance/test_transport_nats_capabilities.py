"""NATS JetStream: delayed delivery, priority levels and replay, beyond what the shared
suites check (issue 13 item 6): several movers moving each due message once, a
schedule kept while nobody reads, a stream made before delayed delivery, levels read
by competing members and watched while idle, offsets as stream sequences across
partitions. Each test deletes the streams it made."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator

import nats
import pytest
from nats.js import api
from tests.brokers import NATS, cleanup_streams, require

from seawall import ChannelSpec, FromOffsets, FromTime, partition_for
from seawall.testing._conformance import Inbox, make_message
from seawall.transports.nats import NatsTransport

pytestmark = pytest.mark.integration


def fresh(label: str) -> str:
    return f"cap{label}.{uuid.uuid4().hex[:8]}"


@pytest.fixture
async def doomed() -> AsyncIterator[set[str]]:
    async with cleanup_streams() as names:
        yield names


async def connect() -> NatsTransport:
    return await NatsTransport.connect(require(NATS))


def made(doomed: set[str], *transports: NatsTransport) -> None:
    """Mark the streams the transports made for deletion."""
    doomed.update(s.name for t in transports for s in t._streams.values())


# -- delayed delivery ----------------------------------------------------------
async def test_several_movers_move_each_due_message_once_to_every_group(
    doomed: set[str],
) -> None:
    url = require(NATS)
    publisher, *readers = [await NatsTransport.connect(url) for _ in range(3)]
    channel = fresh("movers")
    try:
        await publisher.declare(ChannelSpec(name=channel))
        workers = [await r.subscribe(channel, group="workers", prefetch=8) for r in readers]
        audit = await readers[0].subscribe(channel, group="audit")
        due = time.time() + 0.5
        sent = [make_message(i) for i in range(20)]
        for message in sent:
            await publisher.publish(channel, message, not_before=due)
        async with Inbox(audit, patience=10.0) as audit_inbox:
            audited = await audit_inbox.collect(20)
            arrived = time.time()
            assert await audit_inbox.quiet(0.3) == [], "the audit group got one twice"
        got: list[str] = []
        async with Inbox(workers[0], patience=10.0) as one, Inbox(workers[1], patience=10.0) as two:
            for inbox in (one, two, one, two):  # each holds at most its prefetch of 8
                for delivery in await inbox.quiet(0.3):
                    got.append(delivery.message.id)
                    await inbox.subscription.ack(delivery)
        assert arrived >= due - 0.02, f"delivered {due - arrived:.3f} s early"
        assert sorted(d.message.id for d in audited) == sorted(m.id for m in sent)
        counts = Counter(got)
        assert sorted(counts) == sorted(m.id for m in sent), "the workers missed some"
        assert set(counts.values()) == {1}, f"moved more than once: {counts.most_common(3)}"
        js = await publisher.link()
        stream = publisher._streams[channel]
        state = (await js.stream_info(stream.name, subjects_filter=">")).state
        assert state.messages == 20, "a moved message must leave the schedule subject"
        assert stream.schedule not in (state.subjects or {}), state.subjects
    finally:
        made(doomed, publisher, *readers)
        for transport in (publisher, *readers):
            await transport.close()


async def test_a_schedule_waits_in_the_stream_while_nobody_reads(doomed: set[str]) -> None:
    channel = fresh("kept")
    publisher = await connect()
    try:
        later = make_message(1)
        await publisher.publish(channel, later, not_before=time.time() + 0.2)
        made(doomed, publisher)
    finally:
        await publisher.close()
    await asyncio.sleep(0.4)  # due while no process of the channel runs
    reader = await connect()
    try:
        sub = await reader.subscribe(channel, group="late-comers")
        async with Inbox(sub, patience=10.0) as inbox:
            [got] = await inbox.collect(1)
            assert got.message == later
            assert got.attempt == 1
    finally:
        made(doomed, reader)
        await reader.close()


async def test_a_stream_made_before_delayed_delivery_gets_its_schedule_subject(
    doomed: set[str],
) -> None:
    client = await nats.connect(require(NATS))
    channel = fresh("old")
    tok = channel.replace(".", "_2e")
    name = f"SEAWALL_{tok}"
    doomed.add(name)
    js = client.jetstream()
    await js.add_stream(api.StreamConfig(name=name, subjects=[f"seawall.{tok}.0"]))
    await client.close()
    transport = await connect()
    try:
        sub = await transport.subscribe(channel, group="workers")
        sent = make_message(7)
        await transport.publish(channel, sent, not_before=time.time() + 0.1)
        async with Inbox(sub, patience=10.0) as inbox:
            [got] = await inbox.collect(1)
        assert got.message == sent
        info = await (await transport.link()).stream_info(name)
        assert info.config.subjects == [f"seawall.{tok}.0", f"seawall.{tok}.scheduled"]
    finally:
        await transport.close()


async def test_a_delayed_message_moves_to_its_priority_level(doomed: set[str]) -> None:
    transport = await connect()
    channel = fresh("dlevel")
    try:
        await transport.declare(ChannelSpec(name=channel, priorities=3))
        sub = await transport.subscribe(channel, group="workers", prefetch=1)
        urgent = make_message(2)
        await transport.publish(channel, urgent, not_before=time.time() + 0.2, priority=2)
        lows = [make_message(i) for i in range(3)]
        for message in lows:
            await transport.publish(channel, message, priority=0)
        async with Inbox(sub, patience=10.0) as inbox:
            [first] = await inbox.collect(1)  # a low one: the urgent one is not due
            await asyncio.sleep(0.5)  # due and moved meanwhile, while this member is busy
            await sub.ack(first)
            [second] = await inbox.collect(1)
            assert second.message == urgent, "the moved message lost its level"
            await sub.ack(second)
        js = await transport.link()
        stream = transport._streams[channel]
        kept = await js.get_last_msg(stream.name, stream.subject(2))
        assert kept.headers is not None
        assert "Seawall-Not-Before" not in kept.headers
    finally:
        made(doomed, transport)
        await transport.close()


# -- priority levels -------------------------------------------------------------
async def test_idle_members_watch_every_level_and_compete_for_them(doomed: set[str]) -> None:
    url = require(NATS)
    # a long pull expiry: a message on a level nobody watched would wait for it
    first, second = [await NatsTransport.connect(url, pull_expires=30.0) for _ in range(2)]
    channel = fresh("levels")
    try:
        await first.declare(ChannelSpec(name=channel, priorities=3))
        subs = [await t.subscribe(channel, group="workers", prefetch=4) for t in (first, second)]
        async with Inbox(subs[0], patience=5.0) as a, Inbox(subs[1], patience=5.0) as b:
            await asyncio.sleep(0.2)  # both members are idle, watching
            low = make_message(0)
            started = time.monotonic()
            await first.publish(channel, low, priority=0)
            got = await a.quiet(1.0) + await b.quiet(0)
            assert [d.message.id for d in got] == [low.id]
            assert time.monotonic() - started < 1.5, "a low level waited for a pull to expire"
            assert got[0].partition == 0
            taken = [low.id]
            for sub in subs:
                await sub.ack(got[0])  # settles it on the member that has it; ignored elsewhere
            sent = [make_message(i) for i in range(1, 31)]
            for i, message in enumerate(sent):
                await first.publish(channel, message, priority=i % 3)

            async def drain(inbox: Inbox) -> None:
                while len(taken) < 31:
                    for delivery in await inbox.quiet(0.2):
                        taken.append(delivery.message.id)
                        await inbox.subscription.ack(delivery)

            await asyncio.wait_for(asyncio.gather(drain(a), drain(b)), 10.0)
        assert sorted(taken) == sorted([low.id, *(m.id for m in sent)]), "lost or twice"
    finally:
        made(doomed, first, second)
        await first.close()
        await second.close()


# -- replay ------------------------------------------------------------------------
async def test_offsets_are_stream_sequences_shared_by_the_partitions(doomed: set[str]) -> None:
    transport = await connect()
    channel = fresh("replay")
    try:
        await transport.declare(ChannelSpec(name=channel, partitions=2))
        keys = ["bob", "alice"]  # one key per partition
        assert [partition_for(k, 2) for k in keys] == [0, 1]
        before = [make_message(i, key=keys[i % 2]) for i in range(6)]  # sequences 1..6
        for message in before:
            await transport.publish(channel, message)
        await asyncio.sleep(0.05)
        cut = time.time()
        await asyncio.sleep(0.05)
        after = [make_message(i, key=keys[i % 2]) for i in range(6, 8)]  # sequences 7, 8
        for message in after:
            await transport.publish(channel, message)
        # offset 3 is sequence 4: each partition from there; past the end: the next one
        at_offset = await transport.subscribe(channel, group="o", start=FromOffsets((3, 3)))
        at_time = await transport.subscribe(channel, group="t", start=FromTime(cut))
        beyond = await transport.subscribe(channel, group="b", start=FromOffsets((99, 99)))
        last = make_message(8, key="bob")
        await transport.publish(channel, last)
        expected = sorted(m.id for m in [*before[3:], *after, last])
        async with Inbox(at_offset, patience=10.0) as inbox:
            assert sorted(d.message.id for d in await inbox.collect(6)) == expected
            assert await inbox.quiet(0.3) == []
        async with Inbox(at_time, patience=10.0) as inbox:
            got = sorted(d.message.id for d in await inbox.collect(3))
            assert got == sorted(m.id for m in [*after, last])
        async with Inbox(beyond, patience=10.0) as inbox:
            assert [d.message.id for d in await inbox.collect(1)] == [last.id]
            assert await inbox.quiet(0.3) == []
        with pytest.raises(ValueError, match="2 logs"):
            await transport.subscribe(channel, group="bad", start=FromOffsets((1,)))
    finally:
        made(doomed, transport)
        await transport.close()
