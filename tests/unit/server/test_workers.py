"""Workers: a burst of requests that each wait is handled concurrently, up to the limit."""

from __future__ import annotations

import asyncio

from seawall._server.workers import Workers


async def test_a_burst_of_waiting_items_is_handled_concurrently() -> None:
    running = 0
    most = 0
    release = asyncio.Event()

    async def handle(item: int) -> None:
        nonlocal running, most
        running += 1
        most = max(most, running)
        await release.wait()
        running -= 1

    async with asyncio.TaskGroup() as group:
        workers: Workers[int] = Workers(handle, group.create_task, limit=8, backlog=100)
        for item in range(20):
            workers.put(item)  # all in one loop turn, as a batch of frames arrives
        await asyncio.sleep(0.01)
        assert most == 8, "the burst was not spread over the workers"
        release.set()
        await workers.quiet()
        for task in asyncio.all_tasks() - {asyncio.current_task()}:
            task.cancel()
