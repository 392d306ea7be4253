"""The relays' shared parts: a batch published per aggregate, and the retrying loop."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from seawall import ConnectionLost, Message, OutboxError, VirtualClock
from seawall.outbox import RelayStats
from seawall.outbox._relay import publish_in_order, relay_forever
from seawall.outbox._rows import OutboxRow, row_for


def rows(*keys: str) -> list[OutboxRow]:
    return [
        row_for(
            Message(id=f"{key}-{n}", type="t", source="s", partitionkey=key),
            channel="c",
            aggregate_type="c",
            partitions=1,
        )
        for n, key in enumerate(keys)
    ]


class SlowBroker:
    """Publishes after a pause that differs per key; fails on request; records the order."""

    def __init__(self, fail_on: str | None = None) -> None:
        self.stored: list[str] = []
        self.fail_on = fail_on
        self.at_once = 0
        self.most_at_once = 0

    async def publish(self, channel: str, message: Message, **options: Any) -> None:
        self.at_once += 1
        self.most_at_once = max(self.most_at_once, self.at_once)
        try:
            await asyncio.sleep(0.003 if message.partitionkey == "a" else 0.001)
            if message.id == self.fail_on:
                raise ConnectionLost(f"lost while publishing {message.id}")
            self.stored.append(message.id)
        finally:
            self.at_once -= 1


async def test_one_aggregate_after_the_other_within_it_several_at_once() -> None:
    broker = SlowBroker()
    stats = RelayStats()
    batch = rows("a", "b", "a", "c", "b", "a", "d")
    await publish_in_order(broker, batch, window=3, stats=stats)  # type: ignore[arg-type]
    assert stats.published == 7
    assert sorted(broker.stored) == sorted(r.id for r in batch)
    for key in "abcd":
        mine = [i for i in broker.stored if i.startswith(key)]
        assert mine == sorted(mine, key=lambda i: int(i.split("-")[1]))
    assert broker.most_at_once == 3


async def test_window_one_publishes_in_the_given_order() -> None:
    broker = SlowBroker()
    batch = rows("a", "b", "a", "c")
    await publish_in_order(broker, batch, window=1, stats=RelayStats())  # type: ignore[arg-type]
    assert broker.stored == ["a-0", "a-2", "b-1", "c-3"]  # grouped per aggregate


async def test_a_failed_publish_fails_the_batch_with_its_own_error() -> None:
    broker = SlowBroker(fail_on="b-1")
    with pytest.raises(ConnectionLost, match="b-1"):
        await publish_in_order(broker, rows("a", "b", "c"), window=4, stats=RelayStats())  # type: ignore[arg-type]


async def test_the_loop_backs_off_on_failures_and_waits_when_idle() -> None:
    clock = VirtualClock()
    stats = RelayStats()
    calls: list[float] = []
    results: list[int | Exception] = [
        OutboxError("database away"),
        ConnectionLost("broker away"),
        10,
        3,
        0,
    ]

    async def step() -> int:
        calls.append(clock.time())
        result = results.pop(0) if results else 0
        if isinstance(result, Exception):
            raise result
        return result

    async with asyncio.TaskGroup() as tasks:
        loop = tasks.create_task(
            relay_forever("test relay", step, batch=10, clock=clock, poll=5.0, stats=stats)
        )
        for _ in range(100):  # run what can run, then move the clock to the next timer
            for _ in range(5):
                await asyncio.sleep(0)
            if len(calls) == 6:
                break
            due = clock.next_deadline()
            if due is not None:
                clock.advance_to(due)
        loop.cancel()
    start = calls[0]
    assert [round(t - start, 3) for t in calls] == [0.0, 0.1, 0.3, 0.3, 5.3, 10.3]
    assert stats.failures == 2
    assert stats.last_error is None


async def test_unexpected_errors_end_the_loop() -> None:
    async def step() -> int:
        raise KeyError("a bug")

    with pytest.raises(KeyError):
        await relay_forever(
            "test relay", step, batch=1, clock=VirtualClock(), poll=1.0, stats=RelayStats()
        )
