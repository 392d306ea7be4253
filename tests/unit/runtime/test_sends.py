"""The send queue of requests: in order, by whoever comes first, and what a cancel does."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

import pytest

from seawall import Message
from seawall._runtime.sends import PendingSend, SendQueue
from seawall._tasks import TaskScope


class Broker:
    """A transport's publish, recorded; the first attempt at an id in ``hold`` waits for
    ``release``, one at ``fail`` raises."""

    def __init__(self, *, hold: tuple[str, ...] = (), fail: str | None = None) -> None:
        self.started: list[str] = []
        self.hold, self.fail = set(hold), fail
        self.release = asyncio.Event()

    async def publish(self, channel: str, message: Message) -> None:
        self.started.append(message.id)
        if message.id in self.hold:
            self.hold.discard(message.id)  # the next attempt goes through
            await self.release.wait()
        await asyncio.sleep(0)  # a real publish waits: let others run meanwhile
        if message.id == self.fail:
            raise ConnectionError(f"lost {message.id}")


def pending(*ids: str) -> list[PendingSend]:
    loop = asyncio.get_running_loop()
    return [
        PendingSend("orders", Message(id=i, type="t", source="s"), loop.create_future())
        for i in ids
    ]


async def turns(n: int = 10) -> None:
    for _ in range(n):
        await asyncio.sleep(0)


@pytest.fixture
async def tasks() -> AsyncIterator[TaskScope]:
    async with TaskScope() as scope:
        yield scope


def queued(broker: Broker, tasks: TaskScope, sends: list[PendingSend]) -> SendQueue:
    queue = SendQueue(broker, tasks)  # type: ignore[arg-type]  # publish is all it uses
    for send in sends:
        queue.add(send)
    return queue


async def test_a_send_nobody_awaits_goes_out_at_the_next_turn_of_the_loop(
    tasks: TaskScope,
) -> None:
    broker = Broker()
    queue = queued(broker, tasks, pending("a"))
    assert broker.started == []  # add() itself never publishes
    await turns()
    assert broker.started == ["a"]
    assert len(queue) == 0


async def test_an_awaited_send_takes_the_earlier_ones_out_first_in_order(
    tasks: TaskScope,
) -> None:
    broker = Broker()
    a, b, c = pending("a", "b", "c")
    queue = queued(broker, tasks, [a, b, c])
    await queue.send_through(b)
    assert broker.started[:2] == ["a", "b"]
    await turns()
    assert broker.started == ["a", "b", "c"]  # c by the background sender, still last


async def test_a_failed_publish_fails_only_its_own_request(tasks: TaskScope) -> None:
    broker = Broker(fail="b")
    a, b, c = pending("a", "b", "c")
    queued(broker, tasks, [a, b, c])
    await turns()
    assert broker.started == ["a", "b", "c"]
    assert isinstance(b.future.exception(), ConnectionError)
    assert not a.future.done()  # their replies, not their sends, resolve them
    assert not c.future.done()


async def test_a_requester_cancelled_while_sending_its_own_message_gives_up_its_future(
    tasks: TaskScope,
) -> None:
    broker = Broker(hold=("a",))
    a, b = pending("a", "b")
    queue = queued(broker, tasks, [a, b])
    requester = asyncio.create_task(queue.send_through(a))
    await turns(2)
    requester.cancel()
    await asyncio.wait({requester})
    assert a.future.cancelled()
    broker.release.set()
    await turns()
    assert broker.started == ["a", "b"]  # what was queued behind it still goes out


async def test_a_requester_cancelled_while_sending_another_message_puts_it_back(
    tasks: TaskScope, caplog: pytest.LogCaptureFixture
) -> None:
    # c's requester leaves (its deadline) while it publishes a, queued first by another
    # request, and the background sender publishes b: a goes out again (at least once),
    # and c, whose requester left, never
    caplog.set_level(logging.DEBUG, logger="seawall.tasks")
    broker = Broker(hold=("a", "b"))
    a, b, c = pending("a", "b", "c")
    queue = queued(broker, tasks, [a, b, c])
    requester = asyncio.create_task(queue.send_through(c))
    await turns()
    assert sorted(broker.started) == ["a", "b"]
    requester.cancel()
    await asyncio.wait({requester})
    broker.release.set()
    await turns()
    assert sorted(broker.started) == ["a", "a", "b"]
    assert not a.future.done()
    assert not c.taken
    assert len(queue) == 0
    # the background sender that was sending up to c ended when c was withdrawn
    assert [r.getMessage() for r in caplog.records if r.name == "seawall.tasks"] == []


async def test_no_background_send_starts_once_the_scope_closed() -> None:
    errors: list[dict[str, Any]] = []
    asyncio.get_running_loop().set_exception_handler(lambda _, context: errors.append(context))
    broker = Broker()
    async with TaskScope() as tasks:
        queue = queued(broker, tasks, pending("a"))
    await turns()
    assert broker.started == []
    assert len(queue) == 1
    assert errors == []  # the scheduled sender saw the scope closed, and did nothing
