"""The crash conformance suite: per-key order holds across a consumer killed with kill -9.

A transport whose groups other processes can join subclasses :class:`CrashConformance`
and supplies :meth:`~CrashConformance.make_transport` and
:meth:`~CrashConformance.member_url`, the URL a child process connects to (the same
broker, the same key prefix); without one (``memory://``, an embedded broker in this
process) the test is skipped.

The test: a survivor in this process and a child process (:mod:`._crash_child`) are the
two members of a group on a channel of four partitions. The child is handed messages of
its partitions and settles none; it is killed with SIGKILL. The survivor takes its
partitions over and must get the child's unsettled messages again *before* later
messages of their keys, and lose none. How soon is the fail-over benchmark's business.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import uuid
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from .._exceptions import TransportError
from .._messages.envelope import Message
from .._messages.ids import uuid7
from .._transport import ChannelSpec, Subscription, Transport

__all__ = ["CrashConformance"]

KEYS, COUNT = 8, 64


class CrashConformance:
    """Per-key order across a consumer crash; subclasses supply the two hooks."""

    timeout: float = 30.0
    """Longest wait for the survivor to take over and catch up."""
    channel_prefix: str = "conformance."

    async def make_transport(self) -> Transport:
        """A new, open transport connected to the broker under test."""
        raise NotImplementedError("subclasses of CrashConformance provide make_transport")

    async def member_url(self) -> str | None:
        """The URL a child process joins the broker under test with, or None (skip)."""
        return None

    @pytest_asyncio.fixture
    async def transport(self) -> AsyncIterator[Transport]:
        transport = await self.make_transport()
        try:
            yield transport
        finally:
            await transport.close()

    async def test_a_killed_members_unsettled_messages_come_first_per_key(
        self, transport: Transport
    ) -> None:
        url = await self.member_url()
        if url is None:
            pytest.skip(f"{type(self).__name__}: no other process can join its groups")
        channel = f"{self.channel_prefix}crash.{uuid.uuid4().hex[:12]}"
        await transport.declare(ChannelSpec(name=channel, partitions=4))
        survivor = await transport.subscribe(channel, group="crash", prefetch=8)
        seen: list[tuple[str, int, int]] = []  # (key, number) in the survivor's delivery order
        reading = _reading(transport, channel, survivor, seen)
        async with _member(url, channel) as child, reading as complete:
            await asyncio.sleep(1.0)  # the partitions are shared out by now
            for n in range(COUNT):
                await transport.publish(channel, _message(n))
            held = await child.held_some(self.timeout)
            child.kill()
            async with asyncio.timeout(self.timeout):
                await complete.wait()
        assert set(held) <= {n for _, n, _ in seen}, "the dead member's messages were lost"
        for key in {k for k, _, _ in seen}:
            got = [(n, attempt) for k, n, attempt in seen if k == key]
            firsts = list(dict.fromkeys(n for n, _ in got))
            assert firsts == sorted(firsts), (
                f"key {key}: the survivor got (number, attempt) {got}: a later message came "
                f"before one the dead member held unsettled ({sorted(held)})"
            )


def _message(n: int) -> Message:
    return Message(
        id=uuid7(),
        type="conformance.Crash",
        source="conformance",
        data=str(n).encode(),
        partitionkey=f"k{n % KEYS}",
    )


class _Child:
    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.got: list[int] = []

    async def held_some(self, timeout: float) -> list[int]:
        """Wait until the child was handed some messages (it settles none)."""
        assert self.proc.stdout is not None
        async with asyncio.timeout(timeout):
            while not self.got:
                line = (await self.proc.stdout.readline()).decode()
                assert line, "the member process ended before it was handed anything"
                self.got.append(int(line.split()[1]))
        await asyncio.sleep(0.3)  # it may be handed a few more
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(0.1):
                while line := (await self.proc.stdout.readline()).decode():
                    self.got.append(int(line.split()[1]))
        return self.got

    def kill(self) -> None:
        if self.proc.returncode is None:
            self.proc.kill()


@contextlib.asynccontextmanager
async def _member(url: str, channel: str) -> AsyncIterator[_Child]:
    proc = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "seawall.testing._crash_child", url, channel, "crash"),
        stdout=asyncio.subprocess.PIPE,
    )
    child = _Child(proc)
    try:
        assert proc.stdout is not None
        async with asyncio.timeout(30):
            assert (await proc.stdout.readline()).strip() == b"ready"
        yield child
    finally:
        child.kill()
        await proc.wait()


@contextlib.asynccontextmanager
async def _reading(
    transport: Transport, channel: str, first: Subscription, seen: list[tuple[str, int, int]]
) -> AsyncIterator[asyncio.Event]:
    """The survivor reads and acks in the background (a broken link: it joins again, as
    a dispatcher does); the event is set once it has seen every number."""
    complete = asyncio.Event()
    numbers: set[int] = set()

    async def read() -> None:
        sub = first
        while True:
            try:
                async for delivery in sub:
                    message = delivery.message
                    number = int(message.data)
                    seen.append((message.partitionkey or "", number, delivery.attempt))
                    numbers.add(number)
                    if len(numbers) == COUNT:
                        complete.set()
                    await sub.ack(delivery)
            except TransportError:
                await sub.close()
                await asyncio.sleep(0.05)
                with contextlib.suppress(TransportError):
                    sub = await transport.subscribe(channel, group="crash", prefetch=8)

    task = asyncio.create_task(read())
    try:
        yield complete
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await first.close()
