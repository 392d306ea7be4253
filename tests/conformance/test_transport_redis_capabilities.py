"""Redis Streams: replay from offsets and times beyond what the shared suites check
(issue 13 item 6): entry ids that number each stream's entries, offsets per partition,
the ``seek`` search over many milliseconds, starts below the oldest entry kept and
past the newest, delayed entries numbered too, and a stream whose last id is ahead
of the server's clock. Each test works under a key prefix of its own, deleted after."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator

import pytest
from tests.brokers import REDIS, require, scratch_prefix

from seawall import ChannelSpec, FromOffsets, FromTime, Message, partition_for
from seawall.testing._conformance import Inbox, make_message
from seawall.transports.redis import RedisTransport
from seawall.transports.redis._keys import Keys

pytestmark = pytest.mark.integration


@pytest.fixture
async def transport() -> AsyncIterator[RedisTransport]:
    async with scratch_prefix() as prefix:
        made = await RedisTransport.connect(require(REDIS), prefix=prefix)
        try:
            yield made
        finally:
            await made.close()


def fresh(label: str) -> str:
    return f"cap{label}.{uuid.uuid4().hex[:8]}"


async def ids_of(transport: RedisTransport, channel: str, lane: int) -> list[str]:
    client = await transport.link()
    entries = await client.xrange(Keys(transport.prefix, channel).stream(lane))
    return [entry.decode() for entry, _ in entries]


async def replayed(
    transport: RedisTransport, channel: str, start: FromOffsets | FromTime, count: int
) -> list[str]:
    sub = await transport.subscribe(channel, group=f"g{uuid.uuid4().hex[:6]}", start=start)
    async with Inbox(sub, patience=10.0) as inbox:
        got = [d.message.id for d in await inbox.collect(count)] if count else []
        assert await inbox.quiet(0.2) == [], "replayed more than expected"
    await sub.close()
    return got


async def test_entry_ids_number_the_entries_of_each_partition(transport: RedisTransport) -> None:
    channel = fresh("ids")
    await transport.declare(ChannelSpec(name=channel, partitions=2))
    assert [partition_for(k, 2) for k in ("bob", "alice")] == [0, 1]
    sent = [make_message(i, key="alice" if i % 3 == 0 else "bob") for i in range(9)]
    for message in sent:
        await transport.publish(channel, message)
    for lane in (0, 1):
        numbers = [int(i.split("-")[1]) for i in await ids_of(transport, channel, lane)]
        assert numbers == list(range(1, len(numbers) + 1)), numbers
    by_lane: dict[int, list[Message]] = {0: [], 1: []}
    for message in sent:
        by_lane[partition_for(message.partitionkey, 2)].append(message)
    got = await replayed(transport, channel, FromOffsets((2, 1)), 9 - 2 - 1)
    assert sorted(got) == sorted(m.id for m in by_lane[0][2:] + by_lane[1][1:])


async def test_seek_finds_every_offset_across_many_milliseconds(transport: RedisTransport) -> None:
    channel = fresh("seek")
    sent: list[Message] = []
    for i in range(40):
        sent.append(make_message(i))
        await transport.publish(channel, sent[-1])
        if i % 4 == 0:  # some share a millisecond, some do not
            await asyncio.sleep(0.003)
    for offset in (0, 1, 5, 17, 38, 39):
        got = await replayed(transport, channel, FromOffsets((offset,)), 40 - offset)
        assert got == [m.id for m in sent[offset:]], f"offset {offset}"


async def test_starts_below_the_oldest_and_past_the_newest(transport: RedisTransport) -> None:
    channel = fresh("bounds")
    sent = [make_message(i) for i in range(6)]
    for message in sent:
        await transport.publish(channel, message)
    client = await transport.link()
    stream = Keys(transport.prefix, channel).stream(0)
    third = (await ids_of(transport, channel, 0))[2]
    await client.xtrim(stream, minid=third, approximate=False)  # offsets 0 and 1 are gone
    assert await replayed(transport, channel, FromOffsets((0,)), 4) == [m.id for m in sent[2:]]
    sub = await transport.subscribe(channel, group="beyond", start=FromOffsets((99,)))
    nxt = make_message(6)
    await transport.publish(channel, nxt)
    async with Inbox(sub, patience=10.0) as inbox:
        assert [d.message.id for d in await inbox.collect(1)] == [nxt.id]
    early = FromTime(time.time() - 3600)
    assert await replayed(transport, channel, early, 5) == [m.id for m in [*sent[2:], nxt]]


async def test_delayed_entries_are_numbered_when_they_are_moved(transport: RedisTransport) -> None:
    channel = fresh("delayed")
    sub = await transport.subscribe(channel, group="workers")
    later, now = make_message(0), make_message(1)
    await transport.publish(channel, later, not_before=time.time() + 0.2)
    await transport.publish(channel, now)
    async with Inbox(sub, patience=10.0) as inbox:
        got = [d.message.id for d in await inbox.collect(2)]
    assert got == [now.id, later.id]
    numbers = [int(i.split("-")[1]) for i in await ids_of(transport, channel, 0)]
    assert numbers == [1, 2]
    assert await replayed(transport, channel, FromOffsets((1,)), 1) == [later.id]


async def test_a_last_id_ahead_of_the_clock_keeps_entries_in_order(
    transport: RedisTransport,
) -> None:
    channel = fresh("ahead")
    first = make_message(0)
    await transport.publish(channel, first)
    client = await transport.link()
    stream = Keys(transport.prefix, channel).stream(0)
    ahead = f"{int(time.time() * 1000) + 3_600_000}-0"  # an hour ahead, by another writer
    await client.xadd(stream, {"note": "not seawall"}, id=ahead)
    second = make_message(1)
    await transport.publish(channel, second)
    ids = await ids_of(transport, channel, 0)
    assert ids[2] == f"{ahead.split('-')[0]}-2", ids  # the last id's ms, its own number
    # the foreign entry has no number: offset 1 is the second message
    assert await replayed(transport, channel, FromOffsets((1,)), 1) == [second.id]
