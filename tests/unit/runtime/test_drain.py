"""Graceful drain: intake stops first, then what has not started goes back, per key in order.

The dispatcher's side of issue 13 item 4: each test records, on a memory
broker, what the dispatcher asks of its subscription while the system stops.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import msgspec

from seawall import (
    Command,
    Delivery,
    MemoryTransport,
    RetryPolicy,
    Service,
    Subscription,
    System,
)
from seawall._transport import Start
from seawall.testing._delivery import wait_until

PARKED = RetryPolicy(max_attempts=5, initial_backoff=60.0, max_backoff=60.0, jitter=0)


class Job(Command, frozen=True):
    n: int
    key: str | None = None


class Recorded:
    """A subscription that logs each call the dispatcher makes: ("nack", n), ("ack", n), …"""

    def __init__(self, inner: Subscription, log: list[tuple[str, int | None]]) -> None:
        self.inner, self.log = inner, log

    def __aiter__(self) -> AsyncIterator[Delivery]:
        return self.inner.__aiter__()

    async def ack(self, delivery: Delivery) -> None:
        self.log.append(("ack", _n(delivery)))
        await self.inner.ack(delivery)

    async def nack(self, delivery: Delivery, *, delay: float = 0.0) -> None:
        self.log.append(("nack" if delay == 0 else "nack-later", _n(delivery)))
        await self.inner.nack(delivery, delay=delay)

    async def stop_intake(self) -> None:
        self.log.append(("stop_intake", None))
        await self.inner.stop_intake()

    async def close(self) -> None:
        await self.inner.close()


def _n(delivery: Delivery) -> int:
    return msgspec.json.decode(delivery.message.data, type=Job).n


class RecordingBroker(MemoryTransport):
    """A memory broker whose subscriptions of ``channel`` log what is asked of them."""

    def __init__(self, channel: str) -> None:
        super().__init__()
        self.channel = channel
        self.log: list[tuple[str, int | None]] = []

    async def subscribe(  # type: ignore[override]
        self,
        channel: str,
        *,
        group: str,
        prefetch: int = 64,
        start: Start = "earliest",
        idle_expiry: float | None = None,
    ) -> Subscription:
        sub = await super().subscribe(
            channel, group=group, prefetch=prefetch, start=start, idle_expiry=idle_expiry
        )
        return Recorded(sub, self.log) if channel == self.channel else sub

    def after_stop(self) -> list[tuple[str, int | None]]:
        return self.log[self.log.index(("stop_intake", None)) + 1 :]


async def _send(system: System, jobs: list[Job]) -> None:
    ctx = system.context()
    for job in jobs:
        await ctx.send("work", job, key=job.key)


async def test_a_parked_head_goes_back_before_its_key_and_after_intake_stopped() -> None:
    broker = RecordingBroker("work")
    svc = Service("work", retry=PARKED, concurrency=2)

    @svc.command
    async def work(job: Job) -> None:
        if job.n == 1:
            raise ConnectionError("flaky")

    async with System(svc, transport=broker) as system:
        await _send(system, [Job(n=1, key="k"), Job(n=2, key="k"), Job(n=3, key="k")])
        await wait_until(lambda: system.stats()["work:work/work"].retried == 1, 5, "the park")
        await asyncio.sleep(0.05)
    assert broker.after_stop() == [("nack", 1), ("nack", 2), ("nack", 3)]


async def test_the_messages_behind_a_running_head_wait_for_it_then_go_back() -> None:
    broker = RecordingBroker("work")
    svc = Service("work", concurrency=1)
    release = asyncio.Event()
    started: list[int] = []

    @svc.command
    async def work(job: Job) -> None:
        started.append(job.n)
        if job.n == 1:
            await release.wait()

    system = System(svc, transport=broker, grace=30.0)
    await system.__aenter__()
    jobs = [Job(n=1, key="k"), Job(n=2, key="k"), Job(n=3, key="k"), Job(n=4)]
    await _send(system, jobs)
    await wait_until(lambda: 1 in started, 5, "the head to start")
    stopping = asyncio.create_task(system.__aexit__(None, None, None))
    await wait_until(lambda: ("stop_intake", None) in broker.log, 5, "intake to stop")
    await asyncio.sleep(0.05)
    assert broker.after_stop() == [("nack", 4)], "only what no head holds back goes at once"
    release.set()
    await stopping
    assert broker.after_stop() == [("nack", 4), ("ack", 1), ("nack", 2), ("nack", 3)]
    assert started == [1]


async def test_a_head_failing_during_the_drain_goes_back_at_once_before_its_key() -> None:
    broker = RecordingBroker("work")
    svc = Service("work", retry=PARKED, concurrency=2)
    release = asyncio.Event()

    @svc.command
    async def work(job: Job) -> None:
        if job.n == 1:
            await release.wait()
            raise ConnectionError("flaky")

    system = System(svc, transport=broker, grace=30.0)
    await system.__aenter__()
    await _send(system, [Job(n=1, key="k"), Job(n=2, key="k")])
    await asyncio.sleep(0.05)
    stopping = asyncio.create_task(system.__aexit__(None, None, None))
    await wait_until(lambda: ("stop_intake", None) in broker.log, 5, "intake to stop")
    release.set()
    began = time.monotonic()
    await stopping
    assert time.monotonic() - began < 5.0, "the drain waited for a retry that never comes"
    assert broker.after_stop() == [("nack", 1), ("nack", 2)]
