"""The RabbitMQ transport against a real server, what only it does: partition
hand-over, interoperability with a plain aio-pika client, and a fault (a private
RabbitMQ node stopped and started again mid-stream). The shared suites run from
``test_matrix.py``."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import aio_pika
import aio_pika.abc
import pytest
from tests.brokers import RABBITMQ, cleanup_rabbitmq, free_port, require, unique

from seawall import (
    ChannelSpec,
    Command,
    ConfigurationError,
    ConnectionLost,
    Delivery,
    Document,
    Durability,
    Event,
    RestartIntensity,
    Service,
    System,
    TransportClosed,
)
from seawall.testing._conformance import Inbox, delivers_next, make_message
from seawall.testing._delivery import wait_until
from seawall.transports import connect
from seawall.transports.rabbitmq import RabbitMQSubscription, RabbitMQTransport
from seawall.transports.rabbitmq._layout import inbox_queue

pytestmark = pytest.mark.integration


# -- interoperability with a client seawall did not write ---------------------------
class OrderShipped(Event):
    type_name = "interop.OrderShipped"
    type_version = "1.0.0"

    order_id: str
    parcels: int


async def _next_message(queue: aio_pika.abc.AbstractQueue) -> aio_pika.abc.AbstractIncomingMessage:
    async with asyncio.timeout(10.0), queue.iterator() as messages:
        async for message in messages:
            return message
    raise AssertionError(f"queue {queue.name} ended without a message")


async def test_plain_aio_pika_client_reads_a_seawall_event_and_seawall_reads_its_event() -> None:
    url = require(RABBITMQ)
    name = unique("interop")
    received: list[OrderShipped] = []
    svc = Service(name)

    @svc.command
    async def shipped(event: OrderShipped) -> None:
        received.append(event)

    plain = await aio_pika.connect(url)
    async with cleanup_rabbitmq() as doomed, plain, System(svc, transport=url) as system:
        transport = system.transport
        assert isinstance(transport, RabbitMQTransport)
        channel = await plain.channel()
        # seawall publishes; the plain client reads it through a queue of its own
        await transport.declare(ChannelSpec(name=f"{name}.events"))
        mine = await channel.declare_queue(exclusive=True)
        await mine.bind(f"seawall.{name}_2eevents", routing_key="0")
        await system.context().publish(
            OrderShipped(order_id="o-1", parcels=2), channel=f"{name}.events"
        )
        msg = await _next_message(mine)
        await msg.ack()
        headers = msg.headers
        assert headers["cloudEvents:type"] == "interop.OrderShipped"
        assert headers["cloudEvents:specversion"] == "1.0"
        assert headers["cloudEvents:source"]
        assert headers["cloudEvents:id"] == msg.message_id
        assert headers["cloudEvents:kind"] == "event"
        assert msg.content_type == "application/json"
        assert msg.delivery_mode == aio_pika.DeliveryMode.PERSISTENT
        assert json.loads(msg.body) == {"order_id": "o-1", "parcels": 2}

        # the plain client publishes CloudEvents headers; a seawall handler takes it
        exchange = await channel.get_exchange(f"seawall.{name}")
        await exchange.publish(
            aio_pika.Message(
                json.dumps({"order_id": "o-2", "parcels": 5}).encode(),
                content_type="application/json",
                headers={
                    "cloudEvents:id": "plain-1",
                    "cloudEvents:type": "interop.OrderShipped",
                    "cloudEvents:source": "plain-aio-pika",
                    "cloudEvents:specversion": "1.0",
                },
            ),
            routing_key="0",
        )
        await wait_until(lambda: bool(received), 10.0, "the plain client's event")

        # a message without CloudEvents headers is dead-lettered, not lost
        await exchange.publish(aio_pika.Message(b"hello"), routing_key="0")
        inspector = await transport.subscribe(f"{name}.dlq", group="inspector")
        async with Inbox(inspector, patience=10.0) as inbox:
            [dead] = await inbox.collect(1)
        assert dead.message.data == b"hello"
        assert dead.message.headers["seawall-dlq-reason"] == "unknown-type"
        assert "cloudEvents:id" in dead.message.headers["seawall-decode-error"]
        doomed.update(transport.topology.made)
    assert received == [OrderShipped(order_id="o-2", parcels=5)]


class Quote(Command):
    type_name = "interop.Quote"
    type_version = "1.0.0"

    item: str


class Price(Document):
    type_name = "interop.Price"
    type_version = "1.0.0"

    cents: int


async def test_request_reply_between_two_processes_goes_through_the_reply_inbox() -> None:
    url = require(RABBITMQ)
    name = unique("pricing")
    svc = Service(name)

    @svc.command
    async def quote(cmd: Quote) -> Price:
        return Price(cents=len(cmd.item) * 100)

    async with (
        cleanup_rabbitmq() as doomed,
        System(svc, transport=url) as server,
        System(transport=url) as caller,
    ):
        ctx = caller.context()
        prices = [
            await ctx.request(name, Quote(item="x" * n), returns=Price, timeout=5.0)
            for n in range(1, 4)
        ]
        inbox = caller.node.inbox
        for system in (server, caller):
            assert isinstance(system.transport, RabbitMQTransport)
            doomed.update(system.transport.topology.made)
    assert prices == [Price(cents=100), Price(cents=200), Price(cents=300)]
    # the requester has gone: its inbox queue went with it, and a late reply is dropped
    late = await RabbitMQTransport.connect(url, publish_timeout=5.0)
    try:
        started = time.monotonic()
        await late.publish(inbox, make_message(0))
        assert time.monotonic() - started < 1.0, "waited for an inbox that will not come"
        assert not await late.topology._exists(inbox_queue(inbox)), "a reply recreated it"
    finally:
        await late.close()


async def test_a_reply_inbox_takes_messages_without_acks_and_a_nack_brings_one_back() -> None:
    url = require(RABBITMQ)
    transport = await RabbitMQTransport.connect(url)
    inbox = unique("_inbox.test")
    connection = await aio_pika.connect(url)
    try:
        await transport.declare(ChannelSpec(name=inbox, ephemeral=True))
        sub = await transport.subscribe(inbox, group=inbox, prefetch=1)
        sent = [make_message(i) for i in range(3)]
        for message in sent:
            await transport.publish(inbox, message)
        # RabbitMQ waits for no ack: its queue empties into the process at once,
        # though prefetch lets one delivery out at a time (the count is the
        # broker's, with no event to await: polled)
        channel = await connection.channel()
        async with asyncio.timeout(5.0):
            while await _ready_in(channel, inbox_queue(inbox)):  # noqa: ASYNC110
                await asyncio.sleep(0.01)
        async with Inbox(sub, patience=5.0) as reader:
            [first] = await reader.collect(1)
            await sub.nack(first)
            [again] = await reader.collect(1)
            assert (again.message.id, again.attempt) == (sent[0].id, first.attempt + 1)
            await sub.ack(again)
            rest = [await _taken(reader, sub) for _ in range(2)]
        assert [d.message.id for d in rest] == [m.id for m in sent[1:]]
        await sub.close()
    finally:
        await connection.close()
        await transport.close()


async def _ready_in(channel: aio_pika.abc.AbstractChannel, queue: str) -> int:
    declared = await channel.declare_queue(queue, passive=True)
    count = declared.declaration_result.message_count
    assert count is not None
    return count


async def _taken(reader: Inbox, sub: RabbitMQSubscription) -> Delivery:
    [delivery] = await reader.collect(1)
    await sub.ack(delivery)
    return delivery


async def test_partitions_move_when_a_member_leaves_and_when_one_dies() -> None:
    url = require(RABBITMQ)
    first, second = [await RabbitMQTransport.connect(url, lease=1.0) for _ in range(2)]
    channel = unique("handover")
    async with cleanup_rabbitmq() as doomed:
        try:
            await first.declare(ChannelSpec(name=channel, partitions=4))
            a = await first.subscribe(channel, group="workers")
            b = await second.subscribe(channel, group="workers")
            await wait_until(
                lambda: _reading(a) == _reading(b) == 2, 5.0, "a 2/2 split between members"
            )
            await b.close()  # leaves: says so, its partitions move at once
            await wait_until(lambda: _reading(a) == 4, 1.0, "the leaver's partitions")
            c = await second.subscribe(channel, group="workers")
            await wait_until(lambda: _reading(a) == _reading(c) == 2, 5.0, "a new split")
            await second.drop_connection_for_tests()  # dies: no goodbye, its lease runs out
            await wait_until(lambda: _reading(a) == 4, 4.0, "the dead member's partitions")
            # and the partitions it held deliver to the survivor
            sent = [make_message(i, key=f"k{i}") for i in range(8)]
            for message in sent:
                await first.publish(channel, message)
            async with Inbox(a, patience=5.0) as inbox:
                got = await inbox.collect(len(sent))
            assert sorted(d.message.id for d in got) == sorted(m.id for m in sent)
        finally:
            doomed.update(first.topology.made | second.topology.made)
            await first.close()
            await second.close()


def _reading(sub: RabbitMQSubscription) -> int:
    return sum(sub.owns(p) for p in range(len(sub.queues)))


async def test_a_transport_never_used_closes_without_connecting() -> None:
    transport = RabbitMQTransport(f"amqp://guest:guest@127.0.0.1:{free_port()}/")
    await transport.close()
    with pytest.raises(TransportClosed):
        await transport.publish("orders", make_message(0))


async def test_connecting_to_no_server_fails_soon_and_says_what_to_check() -> None:
    port = free_port()
    started = time.monotonic()
    with pytest.raises(ConnectionLost, match=f"127.0.0.1:{port}.*rabbitmq-server running") as info:
        await RabbitMQTransport.connect(f"amqp://guest:s3cret@127.0.0.1:{port}/")
    assert "s3cret" not in str(info.value), "the password leaked into the error"
    assert time.monotonic() - started < 5.0


def test_connect_picks_this_transport_for_amqp_urls() -> None:
    for url in ("amqp://guest:guest@127.0.0.1:5672/", "amqps://u:p@broker.example:5671/prod"):
        transport = connect(url)
        assert isinstance(transport, RabbitMQTransport), url
        assert transport.url == url
        assert transport.capabilities.durability == Durability.LOCAL_FSYNC


# -- faults: the broker stops mid-stream -------------------------------------------
RABBITMQ_SERVER = Path("/usr/lib/rabbitmq/bin/rabbitmq-server")


class PrivateNode:
    """A RabbitMQ node of the test's own: free loopback ports, state in a temp dir.

    It is stopped with SIGTERM, not SIGKILL: after a SIGKILL a single 3.x node can
    come back with its quorum queues leaderless for over 70 s (rabbitmq-server issue
    #10070), which tests the broker's recovery rather than this transport's. What
    the transport sees is the same either way: the connection drops mid-stream and
    the broker is gone for several seconds.
    """

    def __init__(self, root: Path) -> None:
        if not os.access(RABBITMQ_SERVER, os.X_OK):
            pytest.skip(f"{RABBITMQ_SERVER} is not installed (apt-get install rabbitmq-server)")
        self.port = free_port()
        (root / "rabbitmq.conf").write_text(
            f"listeners.tcp.default = {self.port}\nloopback_users = none\n"
        )
        (root / "rabbitmq-env.conf").write_text("")
        (root / "enabled_plugins").write_text("[].\n")
        self.env = {
            **os.environ,
            "HOME": str(root),  # its own Erlang cookie
            "RABBITMQ_NODENAME": f"seawall-test-{self.port}@localhost",
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(free_port()),
            "RABBITMQ_MNESIA_BASE": str(root / "mnesia"),
            "RABBITMQ_LOG_BASE": str(root / "log"),
            "RABBITMQ_CONFIG_FILE": str(root / "rabbitmq.conf"),
            "RABBITMQ_CONF_ENV_FILE": str(root / "rabbitmq-env.conf"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(root / "enabled_plugins"),
            "RABBITMQ_PID_FILE": str(root / "pid"),
            "RUNNING_UNDER_SYSTEMD": "1",  # exec the Erlang VM: our pid is the node's
            "ERL_EPMD_ADDRESS": "127.0.0.1",
        }
        self.root = root
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}/"

    def start(self) -> None:
        with (self.root / "console.log").open("ab") as log:  # the child keeps its own copy
            self.proc = subprocess.Popen(
                [str(RABBITMQ_SERVER)], env=self.env, cwd=self.root, stdout=log, stderr=log
            )

    def stop(self, how: signal.Signals = signal.SIGTERM) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, how)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait()

    async def ready(self) -> None:
        """Wait until the node takes AMQP connections (a boot takes several seconds)."""
        async with asyncio.timeout(40):
            while True:
                with contextlib.suppress(OSError, aio_pika.exceptions.AMQPError):
                    connection = await aio_pika.connect(self.url, timeout=1.0)
                    await connection.close()
                    return
                await asyncio.sleep(0.2)


class Tick(Event):
    type_name = "fault.Tick"
    type_version = "1.0.0"

    n: int


@pytest.mark.timeout(120)  # two node boots: 15-30 s on this loaded machine, more at worst
async def test_broker_stopped_and_restarted_mid_stream_loses_no_acknowledged_message(
    tmp_path: Path,
) -> None:
    node = PrivateNode(tmp_path)
    channel = unique("fault")
    svc = Service(channel)
    seen: dict[int, float] = {}
    acked: dict[int, float] = {}
    failed: list[tuple[int, float]] = []

    @svc.command
    async def tick(t: Tick) -> None:
        seen.setdefault(t.n, time.monotonic())

    try:
        node.start()
        await node.ready()
        transport = await RabbitMQTransport.connect(node.url, publish_timeout=30.0)
        patient = RestartIntensity(max_restarts=100, max_backoff=0.5)
        async with System(svc, transport=transport, intensity=patient) as system:
            for n in range(120):
                message = system.node.envelope(Tick(n=n), source="fault-test")
                began = time.monotonic()
                try:
                    await transport.publish(channel, message)
                    acked[n] = time.monotonic()
                except ConnectionLost:
                    failed.append((n, time.monotonic() - began))
                if n == 60:
                    stopped_at = time.monotonic()
                    node.stop()
                    node.start()
            await wait_until(lambda: set(acked) <= set(seen), 30.0, "every acked tick")
            assert system.healthy
        await transport.close()
    finally:
        node.stop(signal.SIGKILL)
    assert sorted(set(acked) - set(seen)) == [], "acknowledged but never delivered"
    assert failed == [], f"publishes gave up although the broker came back: {failed}"
    assert len(acked) == 120
    resumed = min(at for n, at in acked.items() if n > 60) - stopped_at
    print(f"\nRabbitMQ node stopped and restarted: publishing resumed after {resumed:.1f} s")


async def test_a_deleted_queue_ends_the_subscription_and_a_new_one_recreates_it() -> None:
    transport = await RabbitMQTransport.connect(require(RABBITMQ))
    channel = unique("deleted")
    async with cleanup_rabbitmq() as doomed:
        try:
            await transport.declare(ChannelSpec(name=channel))
            sub = await transport.subscribe(channel, group="workers", start="latest")
            async with Inbox(sub, patience=5.0) as inbox:
                async with transport.topology.admin() as admin:
                    await admin.queue_delete(sub.queues[0])
                _, error = await inbox.finish()
            assert isinstance(error, ConnectionLost), error
            assert "deleted" in str(error)
            again = await transport.subscribe(channel, group="workers", start="latest")
            await delivers_next(transport, again, channel)
        finally:
            doomed.update(transport.topology.made)
            await transport.close()


async def test_a_deleted_exchange_is_declared_again_by_the_next_publish() -> None:
    transport = await RabbitMQTransport.connect(require(RABBITMQ), publish_timeout=5.0)
    channel = unique("vanished")
    async with cleanup_rabbitmq() as doomed:
        try:
            await transport.declare(ChannelSpec(name=channel))
            await transport.publish(channel, make_message(0))
            async with transport.topology.admin() as admin:
                await admin.exchange_delete(f"seawall.{channel.replace('.', '_2e')}")
            sent = make_message(1)
            started = time.monotonic()
            await transport.publish(channel, sent)  # 404: the channel is declared again
            assert time.monotonic() - started < 2.0
            sub = await transport.subscribe(channel, group="workers")
            async with Inbox(sub, patience=5.0) as inbox:
                got = await inbox.collect(2)
            assert {d.message.id for d in got} >= {sent.id}
        finally:
            doomed.update(transport.topology.made)
            await transport.close()


async def test_delays_beyond_the_ladder_and_delayed_replies_are_refused_clearly() -> None:
    transport = await RabbitMQTransport.connect(require(RABBITMQ))
    try:
        far = time.time() + 2 * 86_400
        with pytest.raises(ConfigurationError, match="at most 82000 s"):
            await transport.publish("orders", make_message(0), not_before=far)
        with pytest.raises(ConfigurationError, match="reply inbox"):
            await transport.publish("_inbox.x", make_message(1), not_before=time.time() + 1)
    finally:
        await transport.close()


async def test_a_publish_with_no_broker_waits_its_bound_then_says_why() -> None:
    url = f"amqp://guest:guest@127.0.0.1:{free_port()}/"
    transport = RabbitMQTransport(url, publish_timeout=0.5, connect_timeout=0.2)
    try:
        started = time.monotonic()
        with pytest.raises(ConnectionLost, match="cannot connect to RabbitMQ"):
            await transport.publish("orders", make_message(0))
        waited = time.monotonic() - started
        assert 0.5 <= waited < 2.0, f"gave up after {waited:.2f} s, bound 0.5 s"
    finally:
        await transport.close()


async def test_an_expiring_group_joins_a_queue_declared_without_one_and_stale_names_go() -> None:
    transport = await RabbitMQTransport.connect(require(RABBITMQ))
    channel = unique("expiring")
    async with cleanup_rabbitmq() as doomed:
        try:
            await transport.declare(ChannelSpec(name=channel))
            layout = await transport._layout(channel)
            old = await transport.subscribe(channel, group="old")  # as an older seawall made it
            await old.close()
            again = await transport.subscribe(channel, group="old", idle_expiry=60)
            await again.close()
            # one declared with other arguments between the look and the declaration
            arguments = {"x-queue-type": "quorum", "x-expires": 60_000}
            await transport.topology._group_queue(layout.queue("old", 0), arguments)
            for group in ("lasting", "gone"):
                sub = await transport.subscribe(
                    channel, group=group, idle_expiry=None if group == "lasting" else 60
                )
                await sub.close()
            async with transport.topology.admin() as admin:
                await admin.queue_delete(layout.queue("gone", 0))  # as RabbitMQ's expiry would
            assert await transport.topology.groups(layout) == {"old", "lasting", "gone"}
            await transport.delete(channel, group="old")
            assert await transport.topology.groups(layout) == {"lasting"}
        finally:
            doomed.update(transport.topology.made)
            await transport.delete(channel)
            await transport.close()


async def test_subscribes_cancelled_midway_leave_the_transport_declaring_and_subscribing() -> None:
    """A caller cancelled in the middle of an AMQP request (a System stopping while it
    subscribes) must not leave a broken AMQP channel, or connection, to the next
    declaration. The cancels land at even steps across the time one subscribe takes, so
    they hit each of its requests (declarations, the group's registration, bindings,
    consumers). Two priority levels make the groups' queues classic ones, quicker to
    declare than quorum queues; the requests are the same."""
    transport = await RabbitMQTransport.connect(require(RABBITMQ))
    channel, inbox = unique("cancelled"), unique("cancelled-inbox")
    steps = 24
    async with cleanup_rabbitmq() as doomed:
        try:
            await transport.declare(ChannelSpec(name=channel, priorities=2))
            started = time.monotonic()
            await (await transport.subscribe(channel, group="whole", start="latest")).close()
            whole = time.monotonic() - started
            cancels = 0
            for step in range(steps):
                subscribing = asyncio.ensure_future(
                    transport.subscribe(channel, group=f"g{step}", start="latest")
                )
                await asyncio.sleep(whole * step / steps)
                if subscribing.done():
                    await (await subscribing).close()
                    continue
                subscribing.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await subscribing
                cancels += 1
                # at once, before RabbitMQ could answer the close of a channel left midway
                await transport.declare(ChannelSpec(name=inbox, ephemeral=True))
            assert cancels > steps // 2, f"only {cancels} of {steps} subscribes were cancelled"
            again = await transport.subscribe(channel, group="g0", start="latest")
            await delivers_next(transport, again, channel)
        finally:
            doomed.update(transport.topology.made)
            doomed.add(("queue", inbox_queue(inbox)))
            await transport.delete(channel)
            await transport.close()
