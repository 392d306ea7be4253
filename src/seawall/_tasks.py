"""A scope for background tasks whose outcome is reported elsewhere.

Request sends run in the background so that ``ctx.request(...)`` can return
at once; their errors reach the caller through the :class:`~seawall.Reply`.
Unlike a ``TaskGroup``, one failed send must not cancel its siblings, so they
live in a :class:`TaskScope`: still owned (the scope closes with its
``async with``, cancelling what is left), never fire-and-forget.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from types import TracebackType
from typing import Any, Self, TypeVar

__all__ = ["TaskScope", "being_cancelled"]

T = TypeVar("T")
log = logging.getLogger("seawall.tasks")


class TaskScope:
    """Owns tasks; closing it waits briefly for them, then cancels the rest."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[Any]] = set()
        self._closed = False

    def __len__(self) -> int:
        return len(self._tasks)

    @property
    def closed(self) -> bool:
        """Whether the scope has closed; it starts no more tasks."""
        return self._closed

    def create_task(self, coro: Coroutine[Any, Any, T]) -> asyncio.Task[T]:
        if self._closed:
            coro.close()
            raise RuntimeError("this task scope is closed; the system has stopped")
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            # the owner of the result (a Reply) re-raises it when awaited
            log.debug("background task %s failed: %r", task.get_name(), task.exception())

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._closed = True
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)


def being_cancelled() -> bool:
    """Whether the running task has a cancellation pending (someone is stopping it)."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0
