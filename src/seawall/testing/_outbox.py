"""The outbox conformance suite: the contract every outbox backend passes.

Each backend's test module subclasses :class:`OutboxConformance` and supplies
a factory for a fresh, empty outbox (and a way to dispose of it)::

    class TestSQLiteOutbox(OutboxConformance):
        async def make_outbox(self, **options: Any) -> Outbox[Any]:
            return await SQLiteOutbox.open(self.tmp / "service.db", **options)

The suite drives the outbox only through its own API (transactions that
publish and send, claims, the inbox), with real services over the memory
transport, on real time with bounded waits, so it runs unchanged against a
shared database server (give each outbox its own table prefix).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import msgspec
import pytest
import pytest_asyncio

from .._exceptions import ConnectionLost
from .._messages.envelope import Message
from .._messages.payload import Command, Document, Event
from .._runtime.context import Context
from .._runtime.service import Service
from .._runtime.system import System
from ..outbox import Inbox, Outbox, OutboxTransaction, PollingRelay
from ..outbox._rows import message_of
from ..transports.memory import MemoryTransport
from ._system import RecordingTransport

__all__ = ["OutboxConformance"]


class _Noted(Event, frozen=True):
    type_name = "conformance.Noted"
    key: str
    n: int


class _Note(Command, frozen=True):
    type_name = "conformance.Note"
    key: str
    n: int


class _Noting(Document, frozen=True):
    type_name = "conformance.Noting"
    key: str
    n: int


class _Flaky(RecordingTransport):
    """Fails every publish after the first ``good`` ones, until healed."""

    def __init__(self, inner: MemoryTransport, good: int) -> None:
        super().__init__(inner)
        self.good = good

    async def publish(self, channel: str, message: Message, **options: Any) -> None:
        if self.good <= 0:
            raise ConnectionLost("the test broke the link")
        self.good -= 1
        await super().publish(channel, message, **options)


class OutboxConformance:
    """Base tests for an outbox backend; subclasses provide :meth:`make_outbox`."""

    timeout = 10.0
    """Longest wait for something that must happen (a relayed message)."""

    async def make_outbox(self, *, retention: float | None = None) -> Outbox[Any]:
        """A fresh, empty outbox; called once per test (``retention`` as the backends take it)."""
        raise NotImplementedError

    async def dispose_outbox(self, outbox: Outbox[Any]) -> None:
        """Close the outbox and remove what it stored (tables, file)."""
        await outbox.close()

    @pytest_asyncio.fixture
    async def outbox(self) -> AsyncIterator[Outbox[Any]]:
        made = await self.make_outbox()
        try:
            yield made
        finally:
            await self.dispose_outbox(made)

    @pytest_asyncio.fixture
    async def memory(self) -> AsyncIterator[MemoryTransport]:
        transport = MemoryTransport(serialize=True)  # what is relayed must encode
        try:
            yield transport
        finally:
            await transport.close()

    @pytest_asyncio.fixture
    async def ctx(self, memory: MemoryTransport) -> AsyncIterator[Context]:
        async with System(transport=memory) as system:
            yield system.context("svc")

    async def publish_notes(
        self, outbox: Outbox[Any], ctx: Context, *notes: tuple[str, int]
    ) -> list[str]:
        """One committed transaction publishing ``_Noted(key, n)`` per note; their ids."""
        async with outbox.transaction(ctx) as tx:
            return [await tx.publish(_Noted(key=k, n=n), key=k) for k, n in notes]

    async def claimed(self, outbox: Outbox[Any]) -> list[Message]:
        """Every waiting message, claimed and settled."""
        async with outbox.claim(100_000) as rows:
            return [message_of(row) for row in rows]

    async def settled(self, memory: MemoryTransport) -> None:
        """Wait until every group settled every message published so far."""
        await asyncio.sleep(0.01)
        await self.eventually(lambda: memory.unsettled() == 0)

    async def eventually(self, condition: Callable[[], bool]) -> None:
        """Return once ``condition()`` holds; fail after :attr:`timeout` seconds."""
        for _ in range(int(self.timeout / 0.005)):
            if condition():
                return
            await asyncio.sleep(0.005)
        raise AssertionError(f"still not so after {self.timeout} s")

    # -- writing ----------------------------------------------------------------------

    async def test_a_committed_transaction_leaves_its_messages_in_order(
        self, outbox: Outbox[Any], ctx: Context
    ) -> None:
        async with outbox.transaction(ctx) as tx:
            first = await tx.publish(_Noted(key="a", n=1), key="a", subject="a-subject")
            sent = await tx.send("elsewhere", _Note(key="b", n=2), key="b")
            last = await tx.publish(_Noted(key="a", n=3), channel="audit", aggregate_type="Note")
            assert [row.id for row in tx.outgoing] == [first, sent, last]
        assert await outbox.pending() == 3
        async with outbox.claim(10) as rows:
            assert [(r.id, r.channel, r.aggregatetype, r.aggregateid, r.type) for r in rows] == [
                (first, "svc.events", "svc.events", "a", "conformance.Noted"),
                (sent, "elsewhere", "elsewhere", "b", "conformance.Note"),
                (last, "audit", "Note", "", "conformance.Noted"),
            ]
            messages = [message_of(r) for r in rows]
        assert [m.id for m in messages] == [first, sent, last]
        assert [m.kind for m in messages] == ["event", "command", "event"]
        assert [m.partitionkey for m in messages] == ["a", "b", None]
        assert messages[0].subject == "a-subject"
        assert messages[0].source == "svc"
        assert msgspec.json.decode(messages[1].data, type=_Note) == _Note(key="b", n=2)
        assert await outbox.pending() == 0

    async def test_a_rolled_back_transaction_leaves_nothing(
        self, outbox: Outbox[Any], ctx: Context
    ) -> None:
        async def change_of_mind() -> None:
            async with outbox.transaction(ctx) as tx:
                await tx.publish(_Noted(key="a", n=1), key="a")
                raise RuntimeError("changed my mind")

        with pytest.raises(RuntimeError, match="changed my mind"):
            await change_of_mind()
        assert await outbox.pending() == 0
        assert await self.claimed(outbox) == []

    async def test_the_envelope_carries_the_cause(
        self, outbox: Outbox[Any], memory: MemoryTransport
    ) -> None:
        service = Service("svc")
        recording = RecordingTransport(memory)

        @service.command
        async def note(cmd: _Note, ctx: Context) -> None:
            async with outbox.transaction(ctx) as tx:
                await tx.publish(_Noted(key=cmd.key, n=cmd.n), key=cmd.key)

        async with System(service, transport=recording) as system:
            await system.context().send("svc", _Note(key="k", n=1))
            await self.settled(memory)
        (command,) = [m for channel, m in recording.records if channel == "svc"]
        (message,) = await self.claimed(outbox)
        assert (message.causationid, message.correlationid) == (command.id, command.id)

    async def test_commit_order_holds_per_aggregate(
        self, outbox: Outbox[Any], ctx: Context
    ) -> None:
        async def writer(key: str) -> None:
            for n in range(10):
                await self.publish_notes(outbox, ctx, (key, n), ("shared", n))

        await asyncio.gather(*(writer(f"k{i}") for i in range(8)))
        notes = [msgspec.json.decode(m.data, type=_Noted) for m in await self.claimed(outbox)]
        assert len(notes) == 160
        for i in range(8):
            assert [n.n for n in notes if n.key == f"k{i}"] == list(range(10))
        shared = [n.n for n in notes if n.key == "shared"]
        assert sorted(shared) == sorted(list(range(10)) * 8)

    # -- claiming --------------------------------------------------------------------

    async def test_a_failed_claim_leaves_its_rows_a_clean_one_settles_them(
        self, outbox: Outbox[Any], ctx: Context
    ) -> None:
        ids = await self.publish_notes(outbox, ctx, ("a", 1), ("b", 2), ("a", 3))

        async def broken_publish() -> None:
            async with outbox.claim(10) as rows:
                assert [r.id for r in rows] == ids
                raise ConnectionLost("the broker went away")

        with pytest.raises(ConnectionLost):
            await broken_publish()
        assert await outbox.pending() == 3
        async with outbox.claim(2) as rows:
            assert [r.id for r in rows] == ids[:2]
        assert await outbox.pending() == 1
        assert [m.id for m in await self.claimed(outbox)] == ids[2:]

    async def test_retention_keeps_published_rows_marked(self, ctx: Context) -> None:
        outbox = await self.make_outbox(retention=3600.0)
        try:
            await self.publish_notes(outbox, ctx, ("a", 1), ("a", 2))
            assert len(await self.claimed(outbox)) == 2
            assert await outbox.pending() == 0
            assert await self.claimed(outbox) == []
        finally:
            await self.dispose_outbox(outbox)

    # -- the polling relay ---------------------------------------------------------------

    async def test_the_relay_publishes_every_message_once_in_commit_order(
        self, outbox: Outbox[Any], ctx: Context, memory: MemoryTransport
    ) -> None:
        transport = RecordingTransport(memory)
        for n in range(30):
            await self.publish_notes(outbox, ctx, (f"k{n % 4}", n), ("z", n))
        relay = PollingRelay(outbox, transport, batch=7, window=3)
        assert await relay.drain() == 60
        assert relay.statistics().published == 60
        published = [m for _, m in transport.records]
        assert len({m.id for m in published}) == 60
        for key in ("k0", "k1", "k2", "k3", "z"):
            ns = [
                msgspec.json.decode(m.data, type=_Noted).n
                for m in published
                if m.partitionkey == key
            ]
            assert ns == sorted(ns)
        assert await outbox.pending() == 0

    async def test_a_failed_publish_leaves_the_batch_for_the_next_step(
        self, outbox: Outbox[Any], ctx: Context, memory: MemoryTransport
    ) -> None:
        ids = await self.publish_notes(outbox, ctx, *((f"k{n}", n) for n in range(5)))
        flaky = _Flaky(memory, good=2)
        relay = PollingRelay(outbox, flaky, window=1)
        with pytest.raises(ConnectionLost):
            await relay.step()
        assert await outbox.pending() == 5
        flaky.good = 100
        assert await relay.step() == 5
        assert [m.id for _, m in flaky.records] == ids[:2] + ids  # at-least-once: two again

    async def test_the_relay_wakes_when_a_transaction_commits(
        self, outbox: Outbox[Any], ctx: Context, memory: MemoryTransport
    ) -> None:
        transport = RecordingTransport(memory)
        relay = PollingRelay(outbox, transport, poll=3600.0)
        async with asyncio.TaskGroup() as tasks:
            running = tasks.create_task(relay.run())
            await asyncio.sleep(0.05)  # the relay found nothing and waits
            await self.publish_notes(outbox, ctx, ("a", 1))
            await self.eventually(lambda: bool(transport.records))
            running.cancel()
        assert len(transport.records) == 1

    # -- the inbox ---------------------------------------------------------------------

    async def test_an_idempotent_handler_runs_once_per_message_and_replies_alike(
        self, outbox: Outbox[Any], memory: MemoryTransport
    ) -> None:
        inbox = Inbox(outbox)
        service = Service("svc")
        recording = RecordingTransport(memory)
        runs: list[int] = []

        @service.command
        @inbox.idempotent
        async def note(cmd: _Note, tx: OutboxTransaction) -> _Noting:
            runs.append(cmd.n)
            await tx.publish(_Noted(key=cmd.key, n=cmd.n), key=cmd.key)
            return _Noting(key=cmd.key, n=cmd.n)

        async with System(service, transport=recording) as system:
            client = system.context()
            reply = await client.request("svc", _Note(key="k", n=1), returns=_Noting)
            (request,) = [m for channel, m in recording.records if channel == "svc"]
            await recording.publish("svc", request)  # the broker delivers it again
            await self.settled(memory)
            # a repeat gets the first run's reply without running (as a requester would)
            again = await note(_Note(key="k", n=1), Context(system.node, "svc", request))
        assert reply == again == _Noting(key="k", n=1)
        assert runs == [1]
        assert await inbox.seen(request.id, consumer="svc.note")
        assert [m.id for m in await self.claimed(outbox)] != []
        assert await outbox.pending() == 0

    async def test_a_failed_idempotent_handler_leaves_no_trace_and_runs_again(
        self, outbox: Outbox[Any], ctx: Context
    ) -> None:
        inbox = Inbox(outbox)
        failures = [RuntimeError("first attempt fails")]

        @inbox.idempotent(consumer="noter")
        async def note(cmd: _Note, tx: OutboxTransaction) -> None:
            await tx.publish(_Noted(key=cmd.key, n=cmd.n), key=cmd.key)
            if failures:
                raise failures.pop()

        message = ctx.envelope(_Note(key="k", n=1))
        handling = Context(ctx._node, "svc", message)
        with pytest.raises(RuntimeError, match="first attempt"):
            await note(_Note(key="k", n=1), handling)
        assert not await inbox.seen(message.id, consumer="noter")
        assert await outbox.pending() == 0
        await note(_Note(key="k", n=1), handling)
        await note(_Note(key="k", n=1), handling)
        assert await inbox.seen(message.id, consumer="noter")
        assert await outbox.pending() == 1

    async def test_concurrent_copies_of_a_message_run_once(
        self, outbox: Outbox[Any], ctx: Context
    ) -> None:
        inbox = Inbox(outbox)
        runs: list[str] = []

        @inbox.idempotent(consumer="noter")
        async def note(cmd: _Note, tx: OutboxTransaction) -> _Noting:
            runs.append(cmd.key)
            await asyncio.sleep(0.01)
            await tx.publish(_Noted(key=cmd.key, n=cmd.n), key=cmd.key)
            return _Noting(key=cmd.key, n=cmd.n)

        message = ctx.envelope(_Note(key="k", n=7))
        handling = Context(ctx._node, "svc", message)
        replies = await asyncio.gather(*(note(_Note(key="k", n=7), handling) for _ in range(5)))
        assert replies == [_Noting(key="k", n=7)] * 5
        assert runs == ["k"]
        assert await outbox.pending() == 1

    async def test_old_inbox_entries_expire(self, outbox: Outbox[Any], ctx: Context) -> None:
        inbox = Inbox(outbox, keep=60.0)

        @inbox.idempotent(consumer="noter")
        async def note(cmd: _Note, tx: OutboxTransaction) -> None:
            return None

        old, new = ctx.envelope(_Note(key="a", n=1)), ctx.envelope(_Note(key="b", n=2))
        await note(_Note(key="a", n=1), Context(ctx._node, "svc", old))
        entry = await outbox.inbox_entry("noter", old.id)
        assert entry is not None
        assert entry.reply is None
        await note(_Note(key="b", n=2), Context(ctx._node, "svc", new))
        assert await outbox.expire_inbox(entry.handled_at - 1) == 0
        assert await outbox.expire_inbox(entry.handled_at + 61) == 2
        assert not await inbox.seen(old.id, consumer="noter")
        assert await inbox.expire() == 0
