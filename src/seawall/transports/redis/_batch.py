"""Batching of concurrent calls into one Redis round trip.

Publishes and acknowledgements that arrive while a round trip is under way
wait and go together in the next one, and the first batch waits one turn of
the event loop so that callers ready at the same moment join it: no timer,
while a burst of concurrent calls shares round trips.
The first caller that finds no round trip under way sends batches until none
is left; every caller waits for its own result, so no task of its own is
needed. If that caller is cancelled, the callers still queued send their
items themselves; those of the interrupted batch get :class:`ConnectionLost`
(they may or may not have reached the server).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

from ..._exceptions import ConnectionLost

__all__ = ["Batcher"]

T = TypeVar("T")
R = TypeVar("R")


class _Resend(Exception):
    """The sender stopped before this item went: send it again."""


class Batcher(Generic[T, R]):
    """Sends items in batches with ``send``, which returns one result per item.

    ``send`` may return an exception in place of a result: that caller gets it
    raised. If ``send`` itself raises, every caller of that batch does.
    """

    def __init__(
        self, send: Callable[[list[T]], Awaitable[list[R | Exception]]], *, most: int = 512
    ) -> None:
        self._send = send
        self._queue: list[tuple[T, asyncio.Future[R]]] = []
        self._busy = False
        self.most = most
        """Most items in one batch."""

    async def submit(self, item: T) -> R:
        """Send ``item`` with whatever else is waiting; its result."""
        while True:
            future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
            self._queue.append((item, future))
            if not self._busy:
                await self._lead()
            try:
                return await future
            except _Resend:
                continue

    async def _lead(self) -> None:
        self._busy = True
        try:
            await asyncio.sleep(0)  # callers ready to run now join the first batch
            while self._queue:
                batch, self._queue = self._queue[: self.most], self._queue[self.most :]
                await self._run(batch)
        finally:
            self._busy = False
            queued, self._queue = self._queue, []
            for _, future in queued:
                _fail(future, _Resend())

    async def _run(self, batch: list[tuple[T, asyncio.Future[R]]]) -> None:
        try:
            results = await self._send([item for item, _ in batch])
        except Exception as exc:
            for _, future in batch:
                _fail(future, exc)
            return
        except BaseException:
            for _, future in batch:
                _fail(future, ConnectionLost("interrupted before Redis answered; try again"))
            raise
        for (_, future), result in zip(batch, results, strict=True):
            if isinstance(result, Exception):
                _fail(future, result)
            elif not future.done():
                future.set_result(result)


def _fail(future: asyncio.Future[R], exc: Exception) -> None:
    if not future.done():
        future.set_exception(exc)
        future.exception()  # marked as seen: a caller that left must not log it
