"""The transport conformance suite: the delivery contract every transport must pass.

A transport's tests subclass :class:`TransportConformance` and supply only a
factory and a way to break the link (seawall's own transports do so from one
table, ``tests/conformance/test_matrix.py``). The tests run on real time with
bounded waits, so the same suite runs against a real broker server; every test
uses fresh channel names, so runs against a shared server do not collide::

    import pytest

    from seawall import Transport
    from seawall.testing import TransportConformance
    from seawall.transports.nats import NatsTransport  # the transport under test


    @pytest.mark.integration
    class TestNatsTransport(TransportConformance):
        timeout = 10.0  # a real server: allow more time for what must arrive
        quiet_period = 0.3  # and watch longer for what must not

        async def make_transport(self) -> NatsTransport:
            return await NatsTransport.connect("nats://localhost:4222")

        async def break_link(self, transport: Transport) -> None:
            assert isinstance(transport, NatsTransport)
            await transport.drop_connection_for_tests()

Checks a transport cannot take part in are skipped, not failed: those behind a
:class:`~seawall._transport.Capabilities` flag the transport leaves off, and
:meth:`TransportConformance.make_transport_with_publish_timeout` unless the
subclass overrides it.

The class name does not start with ``Test``, so pytest collects only the
subclasses.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Coroutine, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import pytest_asyncio

from .._exceptions import ChannelFull, ConfigurationError, ConnectionLost, MessageTooLarge
from .._messages.envelope import Message
from .._messages.ids import uuid7
from .._transport import (
    Capabilities,
    ChannelSpec,
    Delivery,
    Durability,
    FromOffsets,
    FromTime,
    Subscription,
    Transport,
    partition_for,
)

__all__ = ["Inbox", "TransportConformance", "delivers_next", "ids", "make_message"]


def make_message(seq: int = 0, *, key: str | None = None, data: bytes | None = None) -> Message:
    """A small test message; ``seq`` ends up in the payload unless ``data`` is given."""
    return Message(
        id=uuid7(),
        type="conformance.Ping",
        source="seawall.conformance",
        data=str(seq).encode() if data is None else data,
        partitionkey=key,
    )


def ids(items: Iterable[Delivery | Message]) -> list[str]:
    """Message ids, in order, of deliveries or messages."""
    return [item.message.id if isinstance(item, Delivery) else item.id for item in items]


@dataclass(frozen=True, slots=True)
class _End:
    error: Exception | None


class Inbox:
    """A subscription read by a task of its own, so a test can wait with a bound.

    Reading in one task, instead of cancelling ``anext`` when a wait runs out,
    means a wait that times out never disturbs the subscription or drops a
    delivery on the floor. Use it as an async context manager.
    """

    def __init__(self, subscription: Subscription, *, patience: float) -> None:
        self.subscription = subscription
        self.patience = patience
        """Seconds :meth:`collect` and :meth:`finish` wait before failing."""
        self._queue: asyncio.Queue[Delivery | _End] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Inbox:
        self._task = asyncio.create_task(self._pump())
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.wait({self._task})

    async def _pump(self) -> None:
        error: Exception | None = None
        try:
            async for delivery in self.subscription:
                self._queue.put_nowait(delivery)
        except Exception as exc:  # e.g. ConnectionLost: kept for the test to inspect
            error = exc
        self._queue.put_nowait(_End(error))

    async def _next(self) -> Delivery | _End:
        item = await self._queue.get()
        if isinstance(item, _End):
            self._queue.put_nowait(item)  # later reads see the end too
        return item

    async def collect(self, count: int) -> list[Delivery]:
        """Exactly ``count`` deliveries; fails if they take longer than ``patience``."""
        got: list[Delivery] = []
        try:
            async with asyncio.timeout(self.patience):
                while len(got) < count:
                    item = await self._next()
                    if isinstance(item, _End):
                        if item.error is not None:
                            raise item.error
                        raise AssertionError(f"iteration ended after {len(got)} of {count}")
                    got.append(item)
        except TimeoutError:
            raise AssertionError(
                f"got {len(got)} of {count} expected deliveries within {self.patience} s"
            ) from None
        return got

    async def quiet(self, seconds: float) -> list[Delivery]:
        """Whatever arrives within ``seconds``; a test usually expects nothing."""
        got: list[Delivery] = []
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                while not isinstance(item := await self._next(), _End):
                    got.append(item)
        return got

    async def finish(self) -> tuple[list[Delivery], Exception | None]:
        """Wait for iteration to end: the deliveries not read yet and the error it raised."""
        got: list[Delivery] = []
        try:
            async with asyncio.timeout(self.patience):
                while not isinstance(item := await self._next(), _End):
                    got.append(item)
        except TimeoutError:
            raise AssertionError(
                f"iteration did not end within {self.patience} s of close or failure"
            ) from None
        return got, item.error


async def delivers_next(
    transport: Transport, subscription: Subscription, channel: str, *, patience: float = 5.0
) -> None:
    """Assert that ``subscription`` gets the next message published to ``channel``."""
    sent = make_message(1)
    await transport.publish(channel, sent)
    async with Inbox(subscription, patience=patience) as inbox:
        [got] = await inbox.collect(1)
    assert got.message == sent


class TransportConformance:
    """The shared transport tests; subclass it and supply :meth:`make_transport`."""

    timeout: float = 5.0
    """Longest wait for something that must happen."""
    quiet_period: float = 0.2
    """How long to watch for something that must not happen."""
    nack_delay: float = 0.2
    """Delay used for delayed redelivery and delayed delivery."""
    timing_slack: float = 0.02
    """How much earlier than a delay a delivery may be measured (clock granularity)."""
    publish_timeout: float = 0.2
    """Publish timeout given to :meth:`make_transport_with_publish_timeout`."""
    group_expiry: float = 1.0
    """``idle_expiry`` the group expiry check gives its groups (seconds)."""
    expiry_sweep: float = 1.5
    """How long past ``group_expiry`` the broker may take to delete an idle group
    (RabbitMQ checks a quorum queue's expiry every 5 s)."""
    channel_prefix: str = "conformance."

    # -- what a subclass supplies ------------------------------------------
    async def make_transport(self) -> Transport:
        """A new, open transport connected to the broker under test."""
        raise NotImplementedError("subclasses of TransportConformance provide make_transport")

    async def break_link(self, transport: Transport) -> None:
        """Break ``transport``'s link to the broker, as a network failure would."""
        raise NotImplementedError("subclasses of TransportConformance provide break_link")

    async def make_transport_with_publish_timeout(self, seconds: float) -> Transport:
        """A transport whose publishers give up with ChannelFull after ``seconds``.

        Override it for transports that have a publish timeout; by default the
        test using it is skipped.
        """
        pytest.skip(f"{type(self).__name__} has no publish timeout to test")

    # -- fixtures and helpers ------------------------------------------------
    @pytest_asyncio.fixture
    async def transport(self) -> AsyncIterator[Transport]:
        """The transport under test, closed after the test."""
        transport = await self.make_transport()
        try:
            yield transport
        finally:
            await transport.close()

    def channel_name(self, label: str) -> str:
        """A channel name no other run of the suite uses."""
        return f"{self.channel_prefix}{label}.{uuid.uuid4().hex[:12]}"

    async def declare(self, transport: Transport, label: str, **layout: Any) -> str:
        """Declare a fresh channel with ``layout`` (ChannelSpec fields); its name."""
        name = self.channel_name(label)
        await transport.declare(ChannelSpec(name=name, **layout))
        return name

    def inbox(self, subscription: Subscription) -> Inbox:
        """An :class:`Inbox` that waits as long as :attr:`timeout`."""
        return Inbox(subscription, patience=self.timeout)

    async def publish_all(
        self, transport: Transport, channel: str, messages: Iterable[Message]
    ) -> None:
        """Publish ``messages`` in order, each waiting for the previous one."""
        for message in messages:
            await transport.publish(channel, message)

    async def run_workers(
        self, done: asyncio.Event, workers: Iterable[Coroutine[Any, Any, None]]
    ) -> None:
        """Run ``workers`` until ``done`` (or :attr:`timeout`) and a quiet period more.

        The quiet period lets duplicate deliveries show; the caller's
        assertions then say what went wrong.
        """
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(worker) for worker in workers]
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.timeout):
                    await done.wait()
            await asyncio.sleep(self.quiet_period)
            for task in tasks:
                task.cancel()

    # -- delivery --------------------------------------------------------------
    async def test_published_message_arrives_intact(self, transport: Transport) -> None:
        assert isinstance(transport, Transport)
        channel = await self.declare(transport, "intact")
        now = datetime.now(UTC)
        sent = Message(
            id=uuid7(),
            type="conformance.OrderPlaced",
            source="seawall.conformance/instance-1",
            time=now,
            data=bytes(range(256)),  # every byte value: the body is opaque binary
            kind="command",
            datacontenttype="application/msgpack",
            dataschema="conformance.OrderPlaced/1.2.0",
            subject="order-42",
            correlationid=uuid7(),
            causationid=uuid7(),
            replyto="conformance.replies",
            partitionkey="order-42",
            deadline=now + timedelta(seconds=30),
            traceparent="00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            tracestate="vendor=opaque",
            headers={"x-tenant": "acme", "x-note": "caf\u00e9 \u2615"},
        )
        await transport.publish(channel, sent)
        sub = await transport.subscribe(channel, group="readers")
        assert isinstance(sub, Subscription)
        async with self.inbox(sub) as inbox:
            [delivery] = await inbox.collect(1)
            assert delivery.message == sent, f"sent {sent!r}, received {delivery.message!r}"
            assert delivery.attempt == 1, delivery
            assert delivery.channel == channel, delivery
            assert delivery.partition == 0, delivery
            await sub.ack(delivery)
            assert await inbox.quiet(self.quiet_period) == [], "delivered again after its ack"

    async def test_competing_consumers_handle_each_message_once(self, transport: Transport) -> None:
        channel = await self.declare(transport, "p2p")
        total = 300
        subs = [await transport.subscribe(channel, group="workers", prefetch=10) for _ in range(3)]
        sent = [make_message(i) for i in range(total)]
        await self.publish_all(transport, channel, sent)
        handled: list[tuple[int, str]] = []  # (member, message id)
        done = asyncio.Event()

        async def work(member: int, sub: Subscription) -> None:
            async for delivery in sub:
                handled.append((member, delivery.message.id))
                await asyncio.sleep(0)  # handling takes a moment, as real handlers do
                await sub.ack(delivery)
                if len(handled) >= total:
                    done.set()

        await self.run_workers(done, [work(m, sub) for m, sub in enumerate(subs)])
        counts = Counter(message_id for _, message_id in handled)
        twice = [i for i, n in counts.items() if n > 1]
        assert twice == [], f"{len(twice)} handled more than once, e.g. {twice[:3]}"
        assert set(counts) == set(ids(sent)), f"{total - len(counts)} never handled"
        per_member = Counter(member for member, _ in handled)
        assert len(per_member) > 1, f"one member did all the work: {per_member}"

    async def test_every_group_gets_every_message(self, transport: Transport) -> None:
        channel = await self.declare(transport, "pubsub")
        subs = [await transport.subscribe(channel, group=f"group-{g}") for g in range(3)]
        sent = [make_message(i) for i in range(20)]
        await self.publish_all(transport, channel, sent)
        async with contextlib.AsyncExitStack() as stack:
            inboxes = [await stack.enter_async_context(self.inbox(sub)) for sub in subs]
            for inbox in inboxes:
                got = await inbox.collect(len(sent))
                assert sorted(ids(got)) == sorted(ids(sent)), "a group missed messages"
                assert {d.attempt for d in got} == {1}, [d.attempt for d in got]
            extra = await asyncio.gather(*(i.quiet(self.quiet_period) for i in inboxes))
            assert extra == [[], [], []], f"delivered twice to a group: {extra}"

    async def test_group_start_latest_skips_earlier_messages(self, transport: Transport) -> None:
        channel = await self.declare(transport, "start")
        before = [make_message(i) for i in range(3)]
        after = [make_message(i) for i in range(3, 5)]
        await self.publish_all(transport, channel, before)
        late = await transport.subscribe(channel, group="late", start="latest")
        early = await transport.subscribe(channel, group="early", start="earliest")
        await self.publish_all(transport, channel, after)
        async with self.inbox(late) as late_inbox, self.inbox(early) as early_inbox:
            late_got = ids(await late_inbox.collect(2))
            assert sorted(late_got) == sorted(ids(after)), "start=latest group got old messages"
            early_got = ids(await early_inbox.collect(5))
            assert sorted(early_got) == sorted(ids(before + after)), "start=earliest group"
            assert await late_inbox.quiet(self.quiet_period) == [], "latest: too many"
            assert await early_inbox.quiet(0) == [], "earliest: too many"

    async def test_replay_starts_a_new_group_at_an_offset_or_a_time(
        self, transport: Transport
    ) -> None:
        channel = await self.declare(transport, "replay")
        if not transport.capabilities.replay:
            with pytest.raises(ConfigurationError, match="replay"):
                await transport.subscribe(channel, group="replay", start=FromOffsets((0,)))
            with pytest.raises(ConfigurationError, match="replay"):
                await transport.subscribe(channel, group="replay", start=FromTime(time.time()))
            return
        before = [make_message(i) for i in range(5)]
        after = [make_message(i) for i in range(5, 8)]
        await self.publish_all(transport, channel, before)
        await asyncio.sleep(0.05)  # store times on either side of the cut differ
        cut = time.time()
        await asyncio.sleep(0.05)
        await self.publish_all(transport, channel, after)
        at_offset = await transport.subscribe(channel, group="from-2", start=FromOffsets((2,)))
        at_time = await transport.subscribe(channel, group="from-cut", start=FromTime(cut))
        async with self.inbox(at_offset) as offset_inbox, self.inbox(at_time) as time_inbox:
            got = ids(await offset_inbox.collect(6))
            assert got == ids(before[2:] + after), "FromOffsets((2,)) is not offset 2 on"
            assert ids(await time_inbox.collect(3)) == ids(after), "FromTime(cut)"
            assert await offset_inbox.quiet(self.quiet_period) == [], "offset replay: too many"
            assert await time_inbox.quiet(0) == [], "time replay: too many"

    async def test_replay_reads_every_partition_from_its_start(self, transport: Transport) -> None:
        partitions = 2 if transport.capabilities.partitions else 1
        channel = await self.declare(transport, "replay-partitions", partitions=partitions)
        if not transport.capabilities.replay:
            with pytest.raises(ConfigurationError, match="replay"):
                await transport.subscribe(channel, group="g", start=FromOffsets((0,) * partitions))
            return
        keys = ["bob", "alice"]  # partitions 0 and 1 of two
        before = [make_message(i, key=keys[i % 2]) for i in range(6)]
        after = [make_message(i, key=keys[i % 2]) for i in range(6, 10)]
        await self.publish_all(transport, channel, before)
        await asyncio.sleep(0.05)  # store times on either side of the cut differ
        cut = time.time()
        await asyncio.sleep(0.05)
        await self.publish_all(transport, channel, after)
        every = await transport.subscribe(
            channel, group="all", start=FromOffsets((0,) * partitions)
        )
        at_time = await transport.subscribe(channel, group="from-cut", start=FromTime(cut))
        async with self.inbox(every) as every_inbox, self.inbox(at_time) as time_inbox:
            got = await every_inbox.collect(10)
            assert sorted(ids(got)) == sorted(ids(before + after)), "FromOffsets((0, 0))"
            assert {d.partition for d in got} == set(range(partitions)), "a partition missed"
            assert sorted(ids(await time_inbox.collect(4))) == sorted(ids(after)), "FromTime"
            assert await time_inbox.quiet(self.quiet_period) == [], "time replay: too many"
            assert await every_inbox.quiet(0) == [], "offset replay: too many"

    async def test_priority_levels_deliver_higher_levels_first(self, transport: Transport) -> None:
        if transport.capabilities.priorities < 3:
            pytest.skip("transport has no priority levels")
        channel = await self.declare(transport, "priority", priorities=3)
        levels = {level: [make_message(10 * level + i) for i in range(3)] for level in (0, 1, 2)}
        for message in zip(*levels.values(), strict=True):  # interleaved: 0, 1, 2, 0, 1, 2, ...
            for level, each in enumerate(message):
                await transport.publish(channel, each, priority=level)
        clamped = make_message(99)
        await transport.publish(channel, clamped, priority=7)  # beyond the top: the top
        sub = await transport.subscribe(channel, group="workers", prefetch=1)
        got: list[Delivery] = []
        async with self.inbox(sub) as inbox:
            for _ in range(10):
                [delivery] = await inbox.collect(1)
                got.append(delivery)
                await sub.ack(delivery)
        expected = [*levels[2], clamped, *levels[1], *levels[0]]
        assert ids(got) == ids(expected), "higher levels first, FIFO within a level"

    # -- partitions ----------------------------------------------------------
    def test_partition_for_is_stable_and_spreads_keys(self) -> None:
        # Fixed values: every process and every broker adapter must agree on them.
        known: dict[tuple[str | None, int], int] = {
            ("order-1", 4): 3,
            ("order-2", 4): 1,
            ("alice", 8): 7,
            ("bob", 8): 0,
            ("order-1", 1): 0,
            (None, 8): 0,
        }
        got = {(key, n): partition_for(key, n) for key, n in known}
        assert got == known, f"partition_for changed: {got}"
        spread = Counter(partition_for(f"customer-{i}", 8) for i in range(1000))
        assert set(spread) == set(range(8)), spread
        assert max(spread.values()) < 170, spread  # 125 expected per partition

    async def test_partitions_keep_key_order_with_one_member_each(
        self, transport: Transport
    ) -> None:
        if not transport.capabilities.partitions:
            pytest.skip("transport does not support several partitions")
        channel = await self.declare(transport, "partitions", partitions=4)
        keys = [f"k{i}" for i in range(8)]  # they fall on all four partitions
        per_key = 20
        subs = [await transport.subscribe(channel, group="workers", prefetch=8) for _ in range(2)]
        sent = [make_message(seq, key=key) for seq in range(per_key) for key in keys]
        await self.publish_all(transport, channel, sent)

        order: dict[str, list[int]] = defaultdict(list)
        holding: dict[int, Counter[int]] = defaultdict(Counter)  # partition -> member -> held
        overlaps: list[str] = []
        served: dict[int, set[int]] = defaultdict(set)
        done = asyncio.Event()

        async def settle(member: int, sub: Subscription, delivery: Delivery) -> None:
            await asyncio.sleep(0.001 * (int(delivery.message.data) % 3))  # handling time
            holding[delivery.partition][member] -= 1  # released before the ack: no false alarms
            await sub.ack(delivery)

        async def work(member: int, sub: Subscription) -> None:
            # every delivery is handled and acked by a task of its own, so a member
            # holds several at once and acks them concurrently, out of order
            async with asyncio.TaskGroup() as handlers:
                async for delivery in sub:
                    p = delivery.partition
                    others = [m for m, held in holding[p].items() if held and m != member]
                    if others:
                        overlaps.append(f"partition {p} held by {others} and {member}")
                    holding[p][member] += 1
                    served[p].add(member)
                    key = delivery.message.partitionkey
                    assert key is not None
                    assert p == partition_for(key, 4), f"key {key!r} on partition {p}"
                    order[key].append(int(delivery.message.data))
                    if sum(map(len, order.values())) >= len(sent):
                        done.set()
                    handlers.create_task(settle(member, sub, delivery))

        await self.run_workers(done, [work(m, sub) for m, sub in enumerate(subs)])
        assert overlaps == [], f"{len(overlaps)} overlaps, e.g. {overlaps[:3]}"
        wrong = {k: seqs for k, seqs in order.items() if seqs != list(range(per_key))}
        assert wrong == {}, f"keys delivered out of order or incompletely: {wrong}"
        assert set(order) == set(keys), f"keys never delivered: {set(keys) - set(order)}"
        assert set().union(*served.values()) == {0, 1}, f"one member got every partition: {served}"

    # -- settling ------------------------------------------------------------
    async def test_nack_redelivers_with_next_attempt(self, transport: Transport) -> None:
        channel = await self.declare(transport, "nack")
        sent = make_message()
        await transport.publish(channel, sent)
        sub = await transport.subscribe(channel, group="workers")
        async with self.inbox(sub) as inbox:
            [first] = await inbox.collect(1)
            assert first.attempt == 1, first
            await sub.nack(first)
            [again] = await inbox.collect(1)
            assert again.message == sent, f"redelivered {again.message!r}, sent {sent!r}"
            assert again.attempt == 2, again
            await sub.ack(again)
            assert await inbox.quiet(self.quiet_period) == [], "delivered again after its ack"

    async def test_nack_delay_holds_message_back_while_others_flow(
        self, transport: Transport
    ) -> None:
        if not transport.capabilities.delayed_redelivery:
            pytest.skip("transport does not support delayed redelivery")
        delay = self.nack_delay
        channel = await self.declare(transport, "nack-delay")
        held, *others = [make_message(i) for i in range(3)]
        await transport.publish(channel, held)
        sub = await transport.subscribe(channel, group="workers")
        async with self.inbox(sub) as inbox:
            [first] = await inbox.collect(1)
            started = time.monotonic()
            await sub.nack(first, delay=delay)
            await self.publish_all(transport, channel, others)
            flowing = await inbox.collect(2)
            assert ids(flowing) == ids(others), "expected the two later messages, in order"
            assert time.monotonic() - started < delay, "other messages waited for the delay"
            for delivery in flowing:
                await sub.ack(delivery)
            [again] = await inbox.collect(1)
            waited = time.monotonic() - started
            assert again.message.id == held.id, again
            assert again.attempt == 2, again
            assert waited >= delay - self.timing_slack, f"redelivered after {waited:.3f} s"

    async def test_prefetch_bounds_deliveries_in_flight(self, transport: Transport) -> None:
        channel = await self.declare(transport, "prefetch")
        sent = [make_message(i) for i in range(20)]
        await self.publish_all(transport, channel, sent)
        sub = await transport.subscribe(channel, group="workers", prefetch=5)
        async with self.inbox(sub) as inbox:
            first = await inbox.collect(5)
            assert len(set(ids(first))) == 5, f"duplicates among {ids(first)}"
            assert await inbox.quiet(self.quiet_period) == [], "more than prefetch in flight"
            await sub.ack(first[0])
            [sixth] = await inbox.collect(1)
            assert sixth.message.id not in ids(first), f"{sixth} was already in flight"
            assert sixth.attempt == 1, sixth
            assert await inbox.quiet(self.quiet_period) == [], "one ack let in more than one"

    async def test_close_returns_unsettled_deliveries(self, transport: Transport) -> None:
        channel = await self.declare(transport, "close")
        sent = [make_message(i) for i in range(10)]
        await self.publish_all(transport, channel, sent)
        sub = await transport.subscribe(channel, group="workers", prefetch=4)
        async with self.inbox(sub) as inbox:
            seen = await inbox.collect(4)
            acked = seen[:2]
            for delivery in acked:
                await sub.ack(delivery)
            # two acks free two slots: wait for them so the broker has handed
            # out exactly the deliveries this test has seen
            seen += await inbox.collect(2)
            await sub.close()
            rest, error = await inbox.finish()
        assert (rest, error) == ([], None), f"after close: {rest!r}, {error!r}"
        unacked = set(ids(seen)) - set(ids(acked))
        never_delivered = set(ids(sent)) - set(ids(seen))
        assert len(unacked) == len(never_delivered) == 4, f"seen: {ids(seen)}"

        again = await transport.subscribe(channel, group="workers")
        async with self.inbox(again) as inbox:
            got = await inbox.collect(8)
            attempts = {d.message.id: d.attempt for d in got}
            assert set(attempts) == unacked | never_delivered, "not exactly the unsettled ones"
            assert {attempts[i] for i in unacked} == {2}, attempts
            assert {attempts[i] for i in never_delivered} == {1}, attempts
            assert await inbox.quiet(self.quiet_period) == [], "an acked message came back"

    async def test_resubscribe_after_broken_link(self, transport: Transport) -> None:
        channel = await self.declare(transport, "broken")
        before = [make_message(i) for i in range(5)]
        await self.publish_all(transport, channel, before)
        sub = await transport.subscribe(channel, group="workers", prefetch=10)
        async with self.inbox(sub) as inbox:
            seen = await inbox.collect(5)
            acked = seen[:2]
            for delivery in acked:
                await sub.ack(delivery)
            await self.break_link(transport)
            _, error = await inbox.finish()
        assert isinstance(error, ConnectionLost), f"iteration ended with {error!r}"

        again = await transport.subscribe(channel, group="workers", prefetch=10)
        after = [make_message(i) for i in range(5, 7)]
        await self.publish_all(transport, channel, after)
        async with self.inbox(again) as inbox:
            got = await inbox.collect(5)
            attempts = {d.message.id: d.attempt for d in got}
            unacked = set(ids(seen[2:]))
            assert set(attempts) == unacked | set(ids(after)), "not the unacked and new ones"
            assert {attempts[i] for i in unacked} == {2}, attempts
            assert {attempts[m.id] for m in after} == {1}, attempts
            assert await inbox.quiet(self.quiet_period) == [], "an acked message came back"

    # -- deleting --------------------------------------------------------------
    async def test_deleting_a_channel_takes_its_messages_and_groups(
        self, transport: Transport
    ) -> None:
        channel = await self.declare(transport, "delete")
        await self.publish_all(transport, channel, [make_message(i) for i in range(3)])
        sub = await transport.subscribe(channel, group="workers")
        async with self.inbox(sub) as inbox:
            await inbox.collect(3)  # held, never settled
            await transport.delete(channel)
            _, error = await inbox.finish()
        assert isinstance(error, ConnectionLost), f"the reader of it ended with {error!r}"
        await sub.close()
        await transport.delete(channel)  # gone already: nothing to do
        await transport.delete(self.channel_name("never"))
        again = await transport.subscribe(channel, group="workers")  # a new, empty channel
        fresh = make_message(9)
        await transport.publish(channel, fresh)
        async with self.inbox(again) as inbox:
            [got] = await inbox.collect(1)
            assert (got.message.id, got.attempt) == (fresh.id, 1), got
            assert await inbox.quiet(self.quiet_period) == [], "a deleted message came back"
            await again.ack(got)

    async def test_deleting_a_group_keeps_the_channel_and_its_other_groups(
        self, transport: Transport
    ) -> None:
        channel = await self.declare(transport, "delete-group")
        doomed = await transport.subscribe(channel, group="doomed")
        kept = await transport.subscribe(channel, group="kept")
        sent = [make_message(i) for i in range(3)]
        await self.publish_all(transport, channel, sent)
        async with self.inbox(doomed) as inbox:
            await inbox.collect(3)  # held, never settled
        await doomed.close()
        await transport.delete(channel, group="doomed")
        await transport.delete(channel, group="never")  # no such group: nothing to do
        sent.append(make_message(3))
        await transport.publish(channel, sent[-1])
        async with self.inbox(kept) as inbox:
            got = await inbox.collect(4)
            for delivery in got:
                await kept.ack(delivery)
        assert ids(got) == ids(sent), "the other group lost or reordered messages"
        # a group of that name starts anew: nothing of the old one comes again
        again = await transport.subscribe(channel, group="doomed", start="latest")
        last = make_message(4)
        await transport.publish(channel, last)
        async with self.inbox(again) as inbox:
            [got_last] = await inbox.collect(1)
            assert (got_last.message.id, got_last.attempt) == (last.id, 1), got_last
            assert await inbox.quiet(self.quiet_period) == [], "the deleted group's came back"
            await again.ack(got_last)

    # -- group expiry ----------------------------------------------------------
    async def test_idle_group_expires_and_one_with_a_member_stays(
        self, transport: Transport
    ) -> None:
        if not transport.capabilities.group_expiry:
            await self._idle_group_is_kept(transport)
            return
        expiry = self.group_expiry
        channel = await self.declare(transport, "expiry")
        left = await transport.subscribe(channel, group="left", idle_expiry=expiry)
        await left.close()  # without deleting its group, as a killed process leaves it
        kept = await transport.subscribe(channel, group="kept", idle_expiry=expiry)
        held = make_message(0)  # the left group holds it, unread
        await transport.publish(channel, held)
        async with self.inbox(kept) as inbox:
            [first] = await inbox.collect(1)
            await kept.ack(first)
            await asyncio.sleep(expiry + self.expiry_sweep)
            again = await transport.subscribe(
                channel, group="left", start="latest", idle_expiry=expiry
            )
            fresh = make_message(1)
            await transport.publish(channel, fresh)
            [second] = await inbox.collect(1)
            await kept.ack(second)
        assert ids([first, second]) == ids([held, fresh]), "the group with a member lost some"
        async with self.inbox(again) as inbox:
            [got] = await inbox.collect(1)
            await again.ack(got)
            assert got.message.id == fresh.id, "the idle group outlived its expiry"
            assert await inbox.quiet(self.quiet_period) == [], "the idle group outlived it"

    async def _idle_group_is_kept(self, transport: Transport) -> None:
        """Without ``Capabilities.group_expiry`` the option is accepted and ignored: an
        idle group keeps what it has not read, past its expiry."""
        channel = await self.declare(transport, "no-expiry")
        left = await transport.subscribe(channel, group="left", idle_expiry=0.05)
        await left.close()
        held = make_message(0)
        await transport.publish(channel, held)
        await asyncio.sleep(0.2)
        again = await transport.subscribe(channel, group="left", start="latest", idle_expiry=0.05)
        async with self.inbox(again) as inbox:
            [got] = await inbox.collect(1)
            await again.ack(got)
        assert got.message.id == held.id, "a group the transport says it keeps was lost"

    # -- capabilities ----------------------------------------------------------
    async def test_capabilities_are_declared(self, transport: Transport) -> None:
        capabilities = transport.capabilities
        assert isinstance(capabilities, Capabilities), capabilities
        assert isinstance(capabilities.durability, Durability), capabilities
        limit = capabilities.max_message_bytes
        assert limit is None or limit > 1024, "a limit this small cannot carry an envelope"

    async def test_delayed_delivery_waits_for_not_before(self, transport: Transport) -> None:
        if not transport.capabilities.delayed_delivery:
            pytest.skip("transport does not support delayed delivery")
        delay = self.nack_delay
        channel = await self.declare(transport, "delayed")
        sub = await transport.subscribe(channel, group="workers")
        later, now = make_message(0), make_message(1)
        started = time.monotonic()
        await transport.publish(channel, later, not_before=time.time() + delay)
        await transport.publish(channel, now)
        async with self.inbox(sub) as inbox:
            [first] = await inbox.collect(1)
            assert first.message.id == now.id, "an undelayed message waited behind a delayed one"
            [second] = await inbox.collect(1)
            waited = time.monotonic() - started
            assert second.message == later, f"got {second.message!r}, sent {later!r}"
            assert second.attempt == 1, second
            assert waited >= delay - self.timing_slack, f"delivered after {waited:.3f} s"

    async def test_oversized_message_is_refused(self, transport: Transport) -> None:
        limit = transport.capabilities.max_message_bytes
        if limit is None:
            pytest.skip("transport states no message size limit")
        channel = await self.declare(transport, "oversized")
        with pytest.raises(MessageTooLarge):
            await transport.publish(channel, make_message(data=b"x" * (limit + 1)))
        small = make_message(1)
        await transport.publish(channel, small)
        sub = await transport.subscribe(channel, group="workers")
        async with self.inbox(sub) as inbox:
            assert ids(await inbox.collect(1)) == [small.id], "the small message did not come"
            assert await inbox.quiet(self.quiet_period) == [], "the refused message was stored"

    # -- bounded channels -------------------------------------------------------
    async def test_full_channel_makes_publishers_wait(self, transport: Transport) -> None:
        channel = await self.declare(transport, "bounded", max_messages=10)
        sent = [make_message(i) for i in range(11)]
        async with asyncio.timeout(self.timeout):
            await self.publish_all(transport, channel, sent[:10])
        async with asyncio.TaskGroup() as group:
            blocked = group.create_task(transport.publish(channel, sent[10]))
            await asyncio.wait({blocked}, timeout=self.quiet_period)
            assert not blocked.done(), "a publish to a full channel completed"
            sub = await transport.subscribe(channel, group="workers")
            async with self.inbox(sub) as inbox:
                [first] = await inbox.collect(1)
                await sub.ack(first)
                async with asyncio.timeout(self.timeout):
                    await blocked
                rest = await inbox.collect(10)
                assert sorted(ids([first, *rest])) == sorted(ids(sent)), "lost or duplicated"

    async def test_full_channel_publish_times_out(self) -> None:
        transport = await self.make_transport_with_publish_timeout(self.publish_timeout)
        try:
            channel = await self.declare(transport, "bounded-timeout", max_messages=10)
            sent = [make_message(i) for i in range(11)]
            await self.publish_all(transport, channel, sent[:10])
            started = time.monotonic()
            with pytest.raises(ChannelFull):
                async with asyncio.timeout(self.publish_timeout + self.timeout):
                    await transport.publish(channel, sent[10])
            waited = time.monotonic() - started
            assert waited >= self.publish_timeout - self.timing_slack, f"gave up after {waited} s"
            # the channel still works: once a consumer settles one, there is room
            sub = await transport.subscribe(channel, group="workers")
            async with self.inbox(sub) as inbox:
                [first] = await inbox.collect(1)
                await sub.ack(first)
                await transport.publish(channel, sent[10])
                rest = await inbox.collect(10)
                assert sorted(ids([first, *rest])) == sorted(ids(sent)), "lost or duplicated"
        finally:
            await transport.close()
