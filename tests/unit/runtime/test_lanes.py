"""Per-key lanes: only a lane's head is ready; other keys and unkeyed items flow."""

from __future__ import annotations

import asyncio

from seawall._runtime.lanes import Lanes


async def drain(lanes: Lanes[str]) -> list[str]:
    out = []
    while True:
        try:
            async with asyncio.timeout(0.01):
                out.append(await lanes.get())
        except TimeoutError:
            return out


async def test_only_the_head_of_a_key_is_ready_until_it_is_done() -> None:
    lanes: Lanes[str] = Lanes()
    for item, key in [("a1", "a"), ("a2", "a"), ("b1", "b"), ("x", None), ("a3", "a")]:
        lanes.add(item, key)
    assert await drain(lanes) == ["a1", "b1", "x"]
    lanes.done("a")
    assert await drain(lanes) == ["a2"]
    lanes.done("a")
    lanes.done("b")
    assert await drain(lanes) == ["a3"]
    lanes.done("a")
    lanes.add("a4", "a")  # the lane emptied and closed: a new item is ready at once
    assert await drain(lanes) == ["a4"]


async def test_a_requeued_head_keeps_its_followers_waiting() -> None:
    lanes: Lanes[str] = Lanes()
    lanes.add("k1", "k")
    lanes.add("k2", "k")
    head = await lanes.get()
    lanes.requeue(head)  # back for a retry, still the head
    assert await drain(lanes) == ["k1"]


async def test_a_waiting_worker_is_woken_by_a_new_item() -> None:
    lanes: Lanes[str] = Lanes()
    getter = asyncio.ensure_future(lanes.get())
    await asyncio.sleep(0)
    lanes.add("x", None)
    assert await asyncio.wait_for(getter, 1) == "x"


async def test_a_cancelled_waiter_passes_its_wake_up_on() -> None:
    lanes: Lanes[str] = Lanes()
    first = asyncio.ensure_future(lanes.get())
    second = asyncio.ensure_future(lanes.get())
    await asyncio.sleep(0)
    lanes.add("x", None)  # wakes `first`...
    first.cancel()  # ...which is cancelled before it runs
    assert await asyncio.wait_for(second, 1) == "x"
