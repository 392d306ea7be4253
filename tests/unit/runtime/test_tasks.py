"""The task scope of background sends, and telling a cancel of our own from a leaked one."""

from __future__ import annotations

import asyncio

import pytest

from seawall._tasks import TaskScope, being_cancelled


async def test_a_failed_task_leaves_its_siblings_running_and_keeps_its_error() -> None:
    async def fail() -> None:
        raise ConnectionError("broker gone")

    async def finish() -> str:
        await asyncio.sleep(0.01)
        return "sent"

    async with TaskScope() as scope:
        failed = scope.create_task(fail())
        sibling = scope.create_task(finish())
        assert await sibling == "sent"  # unlike a TaskGroup, nothing was cancelled
        assert isinstance(failed.exception(), ConnectionError)
        assert len(scope) == 0


async def test_closing_the_scope_cancels_what_still_runs_and_waits_for_it() -> None:
    stopped = asyncio.Event()

    async def forever() -> None:
        try:
            await asyncio.Event().wait()
        finally:
            stopped.set()

    async with TaskScope() as scope:
        task = scope.create_task(forever())
        await asyncio.sleep(0)
    assert task.cancelled()
    assert stopped.is_set()
    assert scope.closed


async def test_a_closed_scope_refuses_new_tasks_and_closes_the_coroutine() -> None:
    async with TaskScope() as scope:
        pass

    async def never() -> None:
        raise AssertionError("ran")

    coro = never()
    with pytest.raises(RuntimeError, match="closed"):
        scope.create_task(coro)
    assert coro.cr_frame is None  # closed, so no "never awaited" warning either


async def test_being_cancelled_tells_our_own_cancel_from_a_cancelled_future() -> None:
    seen: dict[str, bool] = {}
    gone: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    async def awaits_a_future_someone_cancels() -> None:
        try:
            await gone
        except asyncio.CancelledError:
            seen["leaked"] = being_cancelled()  # the task itself was not asked to stop

    async def is_stopped() -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            seen["stopped"] = being_cancelled()
            raise

    leaked = asyncio.create_task(awaits_a_future_someone_cancels())
    stopped = asyncio.create_task(is_stopped())
    await asyncio.sleep(0)
    gone.cancel()
    stopped.cancel()
    await asyncio.wait({leaked, stopped})
    assert seen == {"leaked": False, "stopped": True}
    assert not being_cancelled()  # and outside any cancel
