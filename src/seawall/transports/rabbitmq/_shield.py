"""Letting an AMQP exchange finish when its caller is cancelled.

Part of :mod:`seawall.transports.rabbitmq`. aiormq answers the cancellation
of a request it has sent (a declaration, a binding, a ``basic.get``, opening
a channel) by closing that AMQP channel with a ``channel.close`` of its own.
When the broker is closing the same channel at that moment (a passive
declaration that found nothing, a refused one), the two closes cross, and
RabbitMQ ends the whole *connection* ("CHANNEL_ERROR - expected
'channel.open'", or "second 'channel.open' seen" once aiormq has given the
channel's number to a new channel): every subscription of the transport
breaks. Callers get cancelled routinely (a stopping System cancels the
services still subscribing, a timeout cancels a declaration), so the
transport never lets a cancellation into an exchange with the broker:
:func:`finished` runs it in a task of its own and, if the caller is cancelled
meanwhile, waits for it to end (within a bound) before passing the
cancellation on. The task never outlives its caller.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

__all__ = ["BOUND", "finished"]

T = TypeVar("T")

BOUND = 10.0
"""Seconds a cancelled caller waits for its exchange with the broker: one that answers
nothing that long is as good as gone (its heartbeat ends the link soon after)."""


async def finished(
    work: Coroutine[Any, Any, T],
    *,
    bound: float = BOUND,
    undo: Callable[[T], Awaitable[None]] | None = None,
) -> T:
    """``await work``, except that a cancellation of the caller waits for ``work`` to end.

    Then the cancellation goes on, and ``undo`` gets what ``work`` made that nobody
    will have (a subscription to close, say). A ``work`` still running ``bound``
    seconds after the cancellation (a broker that stopped answering) is cancelled.
    """
    task = asyncio.ensure_future(work)
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        if task.cancelled():
            raise  # the work itself was cancelled, not only its caller
        await _outlast(task, bound)
        made = task.done() and not task.cancelled() and task.exception() is None
        if made and undo is not None:
            await undo(task.result())
        raise


async def _outlast(task: asyncio.Future[Any], bound: float) -> None:
    """Wait up to ``bound`` seconds for ``task`` (further cancellations included), then
    cancel it; its outcome is read, so that nothing reports it as never retrieved."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + bound
    while not task.done() and loop.time() < deadline:
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait([task], timeout=deadline - loop.time())
    if not task.done():
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait([task])
    if not task.cancelled():
        task.exception()
