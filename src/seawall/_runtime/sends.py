"""Request sends that have not started yet, kept in the order they were made.

``ctx.request(...)`` returns at once and the message goes out without the
caller awaiting anything. A task per request would cost a task and a trip
round the event loop before the send even began, on every request. Instead
the send waits here, and whoever comes first sends it: the requester awaiting
its reply, in its own task (the common ``await ctx.request(...)``), or one
task started at the loop's next turn for requests nobody awaits yet. Either
way, sends start in the order the requests were made.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

from .._messages.envelope import Message
from .._tasks import TaskScope
from .._transport import Transport

__all__ = ["PendingSend", "SendQueue"]


class PendingSend:
    """One request message waiting to be published; its failure fails ``future``."""

    __slots__ = ("channel", "future", "message", "taken")

    def __init__(self, channel: str, message: Message, future: asyncio.Future[Any]) -> None:
        self.channel = channel
        self.message = message
        self.future = future
        self.taken = False
        """Whether some sender has started on it."""


class SendQueue:
    """Pending sends of one process, published in order by whoever needs them first."""

    def __init__(self, transport: Transport, tasks: TaskScope) -> None:
        self.publish: Callable[[str, Message], Awaitable[None]] = transport.publish
        """How a send goes out: the transport's publish, or the around-send middleware."""
        self._tasks = tasks
        self._queue: deque[PendingSend] = deque()
        self._scheduled = False

    def __len__(self) -> int:
        return len(self._queue)

    def add(self, send: PendingSend) -> None:
        """Queue ``send``; it goes out at the loop's next turn unless awaited before."""
        self._queue.append(send)
        self._schedule()

    def alone(self, send: PendingSend) -> bool:
        """Whether ``send`` is unsent and the only send queued."""
        queue = self._queue
        return len(queue) == 1 and queue[0] is send

    def withdraw(self, send: PendingSend) -> None:
        """Take ``send``, the only one queued (:meth:`alone`), out unsent: its request is
        answered without being published (nothing queued before it is overtaken)."""
        self._queue.clear()
        send.taken = True

    def _schedule(self) -> None:
        if not self._scheduled:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self._send_in_background)

    def _send_in_background(self) -> None:
        self._scheduled = False
        if self._queue and not self._tasks.closed:
            self._tasks.create_task(self.send_through(self._queue[-1]))

    async def send_through(self, last: PendingSend) -> None:
        """Publish the queued sends up to ``last``, in order; at once if already taken.

        Also returns once the queue is empty: ``last`` may have been withdrawn
        meanwhile (its requester left, see :meth:`_interrupted`).
        """
        while not last.taken and self._queue:
            send = self._queue.popleft()
            send.taken = True
            try:
                await self.publish(send.channel, send.message)
            except asyncio.CancelledError:
                self._interrupted(send, last)
                raise
            except Exception as exc:
                if not send.future.done():
                    send.future.set_exception(exc)

    def _interrupted(self, send: PendingSend, last: PendingSend) -> None:
        """The sender was cancelled (its own request's deadline) while publishing ``send``."""
        if send is last:
            if not send.future.done():
                send.future.cancel()
        else:
            # Another request's message, sent here only because it was queued first: the
            # cancellation is not its own, so it goes out again (at least once, as ever).
            send.taken = False
            self._queue.appendleft(send)
            if not last.taken:
                self._queue.remove(last)  # its requester is leaving; nobody awaits its reply
        if self._queue:
            self._schedule()  # the sends queued behind it still go out
