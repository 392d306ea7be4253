"""The Redis Streams transport against real servers, what only it does: partition
hand-over, interoperability with plain redis-py, and a fault test (a server of the
test's own, with AOF always, killed and restarted mid-stream). The shared suites run
from ``test_matrix.py``."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import time
from pathlib import Path

import msgspec
import pytest
import redis.asyncio
from tests.brokers import REDIS, OwnServer, free_port, require, scratch_prefix, unique

from seawall import (
    ChannelSpec,
    Command,
    ConfigurationError,
    ConnectionLost,
    Document,
    Durability,
    Event,
    Message,
    Service,
    System,
    TransportClosed,
    uuid7,
)
from seawall.testing._conformance import Inbox, delivers_next, make_message
from seawall.testing._delivery import wait_until
from seawall.transports import connect
from seawall.transports.redis import RedisTransport, _entry
from seawall.transports.redis._keys import Keys

pytestmark = pytest.mark.integration
REDIS_SERVER = "/usr/bin/redis-server"
encode = msgspec.json.encode


# -- interoperability with a client seawall did not write -----------------------
class OrderShipped(Event):
    type_name = "interop.OrderShipped"
    type_version = "1.0.0"

    order_id: str
    parcels: int


async def test_plain_redis_client_reads_a_seawall_event_and_seawall_reads_its_entry() -> None:
    url = require(REDIS)
    name = unique("interop")
    received: list[OrderShipped] = []
    svc = Service(name)

    @svc.command
    async def shipped(event: OrderShipped) -> None:
        received.append(event)

    plain = redis.asyncio.Redis.from_url(url)
    async with scratch_prefix() as prefix:
        transport = RedisTransport(url, prefix=prefix)
        async with System(svc, transport=transport) as system:
            # seawall publishes; the plain client reads the stream's entry
            await system.context().publish(
                OrderShipped(order_id="o-1", parcels=2), channel=f"{name}.events"
            )
            [(_, fields)] = await plain.xrange(Keys(prefix, f"{name}.events").stream(0))
            assert fields[b"ce_type"] == b"interop.OrderShipped"
            assert fields[b"ce_specversion"] == b"1.0"
            assert fields[b"ce_source"]
            assert fields[b"ce_id"]
            assert fields[b"ce_kind"] == b"event"
            assert fields[b"content-type"] == b"application/json"
            assert json.loads(fields[b"data"]) == {"order_id": "o-1", "parcels": 2}

            # the plain client appends an entry with CloudEvents fields; a handler takes it
            stream = Keys(prefix, name).stream(0)
            await plain.xadd(
                stream,
                {
                    "ce_id": "plain-1",
                    "ce_type": "interop.OrderShipped",
                    "ce_source": "plain-redis-py",
                    "ce_specversion": "1.0",
                    "content-type": "application/json",
                    "data": json.dumps({"order_id": "o-2", "parcels": 5}),
                },
            )
            await wait_until(lambda: bool(received), 10.0, "the plain client's entry")

            # an entry without CloudEvents fields is dead-lettered, not lost
            await plain.xadd(stream, {"data": b"hello"})
            inspector = await transport.subscribe(f"{name}.dlq", group="inspector")
            async with Inbox(inspector, patience=10.0) as inbox:
                [dead] = await inbox.collect(1)
            assert dead.message.data == b"hello"
            assert dead.message.headers["seawall-dlq-reason"] == "unknown-type"
            assert "ce_id" in dead.message.headers["seawall-decode-error"]
        await transport.close()
    await plain.aclose()
    assert received == [OrderShipped(order_id="o-2", parcels=5)]


class Quote(Command, frozen=True):
    item: str


class Price(Document, frozen=True):
    item: str
    cents: int


async def test_request_reply_between_two_processes_goes_through_a_reply_inbox() -> None:
    svc = Service(unique("shop"))

    @svc.command
    async def quote(cmd: Quote) -> Price:
        return Price(item=cmd.item, cents=100 * len(cmd.item))

    async with scratch_prefix() as prefix:
        server = RedisTransport(require(REDIS), prefix=prefix)
        client = RedisTransport(require(REDIS), prefix=prefix)
        async with System(svc, transport=server), System(transport=client) as caller:
            ctx = caller.context()
            prices = [await ctx.request(svc.name, Quote(item=i), returns=Price) for i in "ab"]
            inbox = caller.node.inbox
            # both replies came through the requester's inbox stream on the server
            assert await (await client.link()).xlen(Keys(prefix, inbox).stream(0)) == 2
        await server.close()
        await client.close()
    assert prices == [Price(item="a", cents=100), Price(item="b", cents=100)]


async def test_entries_of_a_member_that_died_are_claimed_by_another() -> None:
    async with scratch_prefix() as prefix:
        dying = await RedisTransport.connect(require(REDIS), prefix=prefix)
        heir = await RedisTransport.connect(require(REDIS), prefix=prefix, claim_idle=0.5)
        try:
            channel = unique("orphans")
            sent = make_message(0)
            await dying.publish(channel, sent)
            sub = await dying.subscribe(channel, group="workers")
            async with Inbox(sub, patience=5.0) as inbox:
                await inbox.collect(1)
            assert dying._client is not None
            await dying._client.aclose()  # dies: nothing given back, the entry stays pending
            other = await heir.subscribe(channel, group="workers")
            async with Inbox(other, patience=5.0) as inbox:
                [got] = await inbox.collect(1)
                assert got.message == sent
                assert got.attempt == 2, got
                await other.ack(got)
        finally:
            await heir.close()


async def test_entries_given_back_in_one_millisecond_come_again_in_stream_order() -> None:
    # Twelve entries of one millisecond (ids 5-1 … 5-12) handed out, then given back
    # together at close, all due at the same time: the retry set must not order them
    # by their ids as text (5-10 before 5-2).
    async with scratch_prefix() as prefix:
        url = require(REDIS)
        transport = await RedisTransport.connect(url, prefix=prefix)
        plain = redis.asyncio.Redis.from_url(url)
        try:
            channel = unique("ties")
            first = await transport.subscribe(channel, group="workers", prefetch=12)
            sent = [make_message(n) for n in range(12)]
            stream = Keys(prefix, channel).stream(0)
            for n, message in enumerate(sent, start=1):
                fields = _entry.encode(message)
                entry = dict(zip(fields[::2], fields[1::2], strict=True))
                await plain.xadd(stream, entry, f"5-{n}")
            async with Inbox(first, patience=5.0) as inbox:
                assert [d.message.id for d in await inbox.collect(12)] == [m.id for m in sent]
            await first.close()  # gives all twelve back, due now
            again = await transport.subscribe(channel, group="workers", prefetch=12)
            async with Inbox(again, patience=5.0) as inbox:
                got = await inbox.collect(12)
            assert [d.message.id for d in got] == [m.id for m in sent]
        finally:
            await plain.aclose()
            await transport.close()


@pytest.mark.parametrize("partitions", [1, 4])
async def test_a_killed_members_entries_are_reclaimed_within_claim_idle_and_the_lease(
    partitions: int,
) -> None:
    # A member takes 12 entries and is SIGKILLed holding them. Behind older entries
    # parked for a retry a minute away (idle too, but no orphans), and with less
    # credit than orphans, a live member must still claim them all within about
    # claim_idle + lease of the kill (issue 13 item 7).
    claim_idle, lease = 2.0, 1.0
    async with scratch_prefix() as prefix:
        url = require(REDIS)
        channel = unique("orphans")
        options = {"prefix": prefix, "claim_idle": claim_idle, "lease": lease}
        first = await RedisTransport.connect(url, **options)
        heir = await RedisTransport.connect(url, **options)
        holder: asyncio.subprocess.Process | None = None
        try:
            await first.declare(ChannelSpec(name=channel, partitions=partitions))
            await _park_for_a_minute(
                first, channel, [make_message(n, key=f"p{n}") for n in range(24)]
            )
            orphans = [make_message(n, key=f"k{n}") for n in range(12)]
            holder = await _holding(url, prefix, channel, partitions, orphans, first)
            holder.send_signal(signal.SIGKILL)
            await holder.wait()
            killed = time.monotonic()
            sub = await heir.subscribe(channel, group="workers", prefetch=2)
            got: dict[str, float] = {}
            async with Inbox(sub, patience=claim_idle + lease + 10.0) as inbox:
                while len(got) < len(orphans):
                    [delivery] = await inbox.collect(1)
                    got.setdefault(delivery.message.id, time.monotonic() - killed)
                    assert delivery.attempt == 2, delivery
                    await sub.ack(delivery)
            assert set(got) == {m.id for m in orphans}
            assert max(got.values()) < claim_idle + lease + 1.0, sorted(got.values())
        finally:
            if holder is not None and holder.returncode is None:
                holder.kill()
                await holder.wait()
            await first.close()
            await heir.close()


async def _park_for_a_minute(
    transport: RedisTransport, channel: str, messages: list[Message]
) -> None:
    """Publish ``messages`` and nack each with a minute's delay: parked, idle, not orphans."""
    for message in messages:
        await transport.publish(channel, message)
    sub = await transport.subscribe(channel, group="workers", prefetch=len(messages))
    async with Inbox(sub, patience=5.0) as inbox:
        for _ in messages:
            [delivery] = await inbox.collect(1)
            await sub.nack(delivery, delay=60.0)
    await sub.close()


async def _holding(
    url: str,
    prefix: str,
    channel: str,
    partitions: int,
    messages: list[Message],
    publisher: RedisTransport,
) -> asyncio.subprocess.Process:
    """A member process of group ``workers`` that took ``messages`` and holds them."""
    lease, claim_idle = publisher.lease, publisher.claim_idle
    url = f"{url}?lease={lease}&claim_idle={claim_idle}"  # its leases run out as the heir's
    holder = await asyncio.create_subprocess_exec(
        *[sys.executable, "-m", "tests.apps.redis_holder", url, prefix, channel, "workers"],
        *[str(partitions), str(len(messages))],
        stdout=asyncio.subprocess.PIPE,
    )
    for message in messages:
        await publisher.publish(channel, message)
    assert holder.stdout is not None
    held: set[str] = set()
    async with asyncio.timeout(20.0):
        while len(held) < len(messages):
            line = await holder.stdout.readline()
            assert line, "the holding member exited early"
            held.add(line.split()[1].decode())
    assert held == {m.id for m in messages}
    return holder


async def test_partitions_move_when_a_member_leaves_and_when_one_dies() -> None:
    async with scratch_prefix() as prefix:
        first, second = [
            await RedisTransport.connect(require(REDIS), prefix=prefix, lease=1.0) for _ in range(2)
        ]
        try:
            channel = unique("handover")
            await first.declare(ChannelSpec(name=channel, partitions=4))
            a = await first.subscribe(channel, group="workers")
            b = await second.subscribe(channel, group="workers")
            await wait_until(lambda: len(a.owned) == len(b.owned) == 2, 5.0, "a 2/2 split")
            await b.close()  # leaves: gives its locks up at once
            await wait_until(lambda: len(a.owned) == 4, 2.0, "the leaver's partitions")
            c = await second.subscribe(channel, group="workers")
            await wait_until(lambda: len(a.owned) == len(c.owned) == 2, 5.0, "a new split")
            assert c._task is not None
            c._task.cancel()  # dies: no more heartbeats, its locks run out (1 s lease)
            await wait_until(lambda: len(a.owned) == 4, 5.0, "the dead member's partitions")
        finally:
            await first.close()
            await second.close()


async def test_connecting_to_no_server_fails_soon_and_says_what_to_check() -> None:
    port = free_port()
    started = time.monotonic()
    with pytest.raises(ConnectionLost, match=f"127.0.0.1:{port}.*redis-server running"):
        await RedisTransport.connect(f"redis://127.0.0.1:{port}/0")
    assert time.monotonic() - started < 5.0


def test_connect_picks_the_redis_transport_by_url() -> None:
    assert isinstance(connect("redis://127.0.0.1:6379/0"), RedisTransport)
    assert isinstance(connect("rediss://127.0.0.1:6380/0"), RedisTransport)


# -- faults: the server dies mid-stream ----------------------------------------------
class ServerProcess(OwnServer):
    """A redis-server of the test's own, on loopback, fsyncing its AOF on every write."""

    def __init__(self, data: Path) -> None:
        port = free_port()
        command = [REDIS_SERVER, "--bind", "127.0.0.1", "--port", str(port), "--dir", str(data)]
        command += ["--save", "", "--appendonly", "yes", "--appendfsync", "always"]
        command += ["--logfile", str(data / "redis.log")]
        super().__init__(command, port, f"redis://127.0.0.1:{port}/0", "redis-server")


class Tick(Event):
    type_name = "fault.Tick"
    type_version = "1.0.0"

    n: int


async def test_server_killed_and_restarted_mid_stream_loses_no_acknowledged_message(
    tmp_path: Path,
) -> None:
    server = ServerProcess(tmp_path)
    try:
        server.start()
        await server.listening()
        transport = await RedisTransport.connect(server.url, publish_timeout=10.0, claim_idle=1.0)
        assert transport.capabilities.durability == Durability.LOCAL_FSYNC
        channel = unique("fault")
        svc = Service(channel)
        acked: set[int] = set()
        failed: list[tuple[int, float]] = []
        seen: set[int] = set()

        @svc.command
        async def tick(event: Tick) -> None:
            seen.add(event.n)

        async def publish(n: int) -> None:
            message = Message(
                id=uuid7(), type=Tick.type_name, source="fault-test", data=encode(Tick(n=n))
            )
            started = time.monotonic()
            try:
                await transport.publish(channel, message)
                acked.add(n)
            except ConnectionLost:
                failed.append((n, time.monotonic() - started))

        # acknowledged while nobody consumes: only the server's AOF keeps them over a SIGKILL
        for n in range(50):
            await publish(n)
        server.kill()
        server.start()
        await server.listening()  # a System starting meets its broker (running ones resume)
        async with System(svc, transport=transport) as system:
            for n in range(50, 200):
                await publish(n)
                if n == 120:  # and once more while the service consumes
                    server.kill()
                    server.start()
            await wait_until(lambda: acked <= seen, 20.0, "every acknowledged tick")
            assert system.healthy
        await transport.close()
    finally:
        server.kill()
    assert sorted(acked - seen) == [], "acknowledged but never delivered"
    assert set(range(50)) <= acked, "the publishes before the first kill were acknowledged"
    assert len(acked) >= 190, f"{len(acked)} of 200 acked; {failed}"
    assert all(waited <= 10.5 for _, waited in failed), failed


async def test_a_deleted_stream_ends_the_subscription_and_a_new_one_recreates_it() -> None:
    async with scratch_prefix() as prefix:
        transport = await RedisTransport.connect(require(REDIS), prefix=prefix)
        try:
            channel = unique("deleted")
            await transport.declare(ChannelSpec(name=channel))
            sub = await transport.subscribe(channel, group="workers")
            async with Inbox(sub, patience=5.0) as inbox:
                await (await transport.link()).delete(Keys(prefix, channel).stream(0))
                _, error = await inbox.finish()
            assert isinstance(error, ConnectionLost), error
            assert "deleted" in str(error)
            again = await transport.subscribe(channel, group="workers")
            await delivers_next(transport, again, channel)
        finally:
            await transport.close()


async def test_a_delivery_held_past_claim_idle_is_kept_alive_not_reclaimed() -> None:
    async with scratch_prefix() as prefix:
        holder, other = [
            await RedisTransport.connect(require(REDIS), prefix=prefix, claim_idle=1.0)
            for _ in range(2)
        ]
        try:
            channel = unique("keepalive")
            await holder.publish(channel, make_message(0))
            slow = await holder.subscribe(channel, group="workers")
            async with Inbox(slow, patience=5.0) as held:
                [delivery] = await held.collect(1)
                rival = await other.subscribe(channel, group="workers")
                async with Inbox(rival, patience=5.0) as inbox:
                    # twice claim_idle: without keep-alive the rival would claim it
                    assert await inbox.quiet(2.2) == [], "claimed while still held"
                await slow.ack(delivery)
        finally:
            await holder.close()
            await other.close()


async def test_a_transport_never_used_closes_without_connecting() -> None:
    transport = RedisTransport(f"redis://127.0.0.1:{free_port()}/0")
    await transport.close()
    with pytest.raises(TransportClosed):
        await transport.publish("orders", make_message(0))


async def test_a_reply_to_a_gone_inbox_is_dropped_at_once_and_recreates_nothing() -> None:
    async with scratch_prefix() as prefix:
        requester = await RedisTransport.connect(require(REDIS), prefix=prefix)
        replier = await RedisTransport.connect(require(REDIS), prefix=prefix)
        inbox = unique("_inbox.test")
        try:
            await requester.declare(ChannelSpec(name=inbox, ephemeral=True))
            sub = await requester.subscribe(inbox, group=inbox)
            await replier.publish(inbox, make_message(0))  # the replier now knows the inbox
            async with Inbox(sub, patience=5.0) as reader:
                await reader.collect(1)
            await sub.close()  # the requester leaves: its inbox keys go
            started = time.monotonic()
            await replier.publish(inbox, make_message(1))
            assert time.monotonic() - started < 1.0, "waited for an inbox that will not come"
            client = await replier.link()
            assert await client.exists(*Keys(prefix, inbox).all(1, [inbox])) == 0
        finally:
            await requester.close()
            await replier.close()


# -- reply inboxes of processes that die: their keys expire --------------------------
REQUESTER = """
import asyncio, sys
from seawall import System
from seawall.transports.redis import RedisTransport

async def main() -> None:
    async with System(transport=RedisTransport(sys.argv[1], prefix=sys.argv[2])) as system:
        print(system.node.inbox, flush=True)
        await asyncio.Event().wait()

asyncio.run(main())
"""


async def test_the_inbox_keys_of_a_sigkilled_requester_expire_after_the_ttl() -> None:
    ttl = 1.0
    async with scratch_prefix() as prefix:
        url = f"{require(REDIS)}?ephemeral_ttl={ttl:g}"  # the option as a URL gives it
        client = redis.asyncio.Redis.from_url(require(REDIS))
        requester = await asyncio.create_subprocess_exec(
            sys.executable, "-c", REQUESTER, url, prefix, stdout=asyncio.subprocess.PIPE
        )
        try:
            assert requester.stdout is not None
            inbox = (await requester.stdout.readline()).decode().strip()
            keys = Keys(prefix, inbox)
            assert await client.exists(keys.meta, keys.stream(0)) == 2
            assert await client.xinfo_groups(keys.stream(0))  # the inbox's group
            assert 0 < await client.pttl(keys.stream(0)) <= ttl * 1000
        finally:
            requester.kill()  # SIGKILL: nothing closes the inbox
            await requester.wait()
        killed = time.monotonic()
        while await client.exists(*keys.expiring(1, inbox)):
            assert time.monotonic() - killed < ttl + 2.0, "the dead requester's keys stayed"
            await asyncio.sleep(0.05)
        gone_after = time.monotonic() - killed
        await client.aclose()
    # renewed every third of the ttl while it lived: gone within (2/3 ttl, ttl] of its death
    assert gone_after > ttl / 3, gone_after


async def test_a_live_idle_inbox_outlives_many_ttls_and_still_gets_its_replies() -> None:
    svc = Service(unique("shop"))

    @svc.command
    async def quote(cmd: Quote) -> Price:
        return Price(item=cmd.item, cents=100 * len(cmd.item))

    ttl = 0.3
    async with scratch_prefix() as prefix:
        server = RedisTransport(require(REDIS), prefix=prefix)
        client = RedisTransport(require(REDIS), prefix=prefix, ephemeral_ttl=ttl)
        async with System(svc, transport=server), System(transport=client) as caller:
            keys = Keys(prefix, caller.node.inbox)
            plain = await client.link()
            for _ in range(8):  # idle for eight ttls: nothing is requested meanwhile
                await asyncio.sleep(ttl)
                assert await plain.exists(keys.meta, keys.stream(0)) == 2
                assert 0 < await plain.pttl(keys.meta) <= ttl * 1000
            price = await caller.context().request(svc.name, Quote(item="ab"), returns=Price)
        await server.close()
        await client.close()
    assert price == Price(item="ab", cents=200)


async def test_an_inbox_whose_keys_expired_under_it_ends_and_comes_back_mortal() -> None:
    async with scratch_prefix() as prefix:
        transport = await RedisTransport.connect(require(REDIS), prefix=prefix, ephemeral_ttl=0.3)
        inbox = unique("_inbox.test")
        keys = Keys(prefix, inbox)
        try:
            await transport.declare(ChannelSpec(name=inbox, ephemeral=True))
            sub = await transport.subscribe(inbox, group=inbox)
            plain = await transport.link()
            async with Inbox(sub, patience=5.0) as reader:
                await plain.delete(keys.meta)  # as if the link had been down past the ttl
                _, error = await reader.finish()
            assert isinstance(error, ConnectionLost), error
            assert "expired" in str(error)
            again = await transport.subscribe(inbox, group=inbox)
            assert 0 < await plain.pttl(keys.meta) <= 300
            assert 0 < await plain.pttl(keys.stream(0)) <= 300
            await delivers_next(transport, again, inbox)
        finally:
            await transport.close()


async def test_keys_an_ephemeral_channel_gains_later_are_mortal_too() -> None:
    async with scratch_prefix() as prefix:
        transport = await RedisTransport.connect(require(REDIS), prefix=prefix, ephemeral_ttl=30)
        inbox = unique("_inbox.test")
        keys = Keys(prefix, inbox)
        try:
            await transport.declare(ChannelSpec(name=inbox, ephemeral=True))
            plain = await transport.link()
            assert 0 < await plain.pttl(keys.meta) <= 30_000  # born mortal, before any reader
            await transport.publish(inbox, make_message(0))  # the append makes the stream
            assert 0 < await plain.pttl(keys.stream(0)) <= 30_000
            sub = await transport.subscribe(inbox, group=inbox)
            async with Inbox(sub, patience=5.0) as reader:
                [got] = await reader.collect(1)
                await sub.nack(got, delay=60.0)  # makes the group's retry set
            assert 0 < await plain.pttl(keys.retry(inbox, 0)) <= 30_000
        finally:
            await transport.close()


def test_the_ephemeral_ttl_comes_from_the_url_or_the_constructor() -> None:
    from_url = RedisTransport("redis://127.0.0.1:6379/0?ephemeral_ttl=2.5&db=0")
    assert from_url.ephemeral_ttl == 2.5
    assert from_url.url == "redis://127.0.0.1:6379/0?db=0"  # redis-py would refuse the option
    assert RedisTransport("redis://127.0.0.1:6379/0").ephemeral_ttl == 60.0
    assert RedisTransport("redis://h/0?ephemeral_ttl=9", ephemeral_ttl=4).ephemeral_ttl == 4
    with pytest.raises(ConfigurationError, match=r"ephemeral_ttl .* number of seconds"):
        RedisTransport("redis://127.0.0.1:6379/0?ephemeral_ttl=soon")
    with pytest.raises(ConfigurationError, match="positive"):
        RedisTransport("redis://127.0.0.1:6379/0", ephemeral_ttl=0)
