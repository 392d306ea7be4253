"""Acknowledged publishes, pipelined: JetStream's answers over one inbox per connection.

A JetStream publish is a NATS message with a reply subject; the stream answers there
with a PubAck. nats-py's ``Client.request`` does this with a fresh NUID token, a random
suffix, a done-callback and an ``asyncio.wait_for`` per call. :class:`Acks` keeps one
wildcard subscription (``<inbox>.*``) and a counter instead: each publish gets the next
number as its token, a future, and a timer handle; the answer resolves the future by a
dict lookup. Publishes do not wait for each other's answers: any number of callers may
have a publish in flight at once (up to ``window``; more wait for room), each returning
when its own answer arrives. JetStream stores the messages of one connection in the
order they arrive, and nats-py writes them in call order, so publishes of one caller
are stored in the order it made them however many are in flight.

The subscription lives as long as the connection: nats-py subscribes it again after a
reconnect. An answer lost with a broken link is a timeout, after which the publish is
tried again under the same ``Nats-Msg-Id`` (see ``NatsTransport._send``).
"""

from __future__ import annotations

import asyncio

import nats.errors
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

__all__ = ["Acks"]

_STATUS = "Status"
_NO_RESPONDERS = "503"


def _expire(answer: asyncio.Future[Msg]) -> None:
    if not answer.done():
        answer.set_exception(nats.errors.TimeoutError())


class Acks:
    """JetStream publishes with their answers on one wildcard inbox; see the module."""

    def __init__(self, client: Client, *, window: int = 4096) -> None:
        if window < 1:
            raise ValueError(f"the window of unanswered publishes must be at least 1, got {window}")
        self._client = client
        self._prefix = client.new_inbox() + "."
        self._skip = len(self._prefix)
        self._waiting: dict[str, asyncio.Future[Msg]] = {}
        self._blocked: list[asyncio.Future[None]] = []
        self._count = 0
        self.window = window
        self._sub: Subscription | None = None

    async def start(self) -> None:
        """Subscribe the inbox (before the first publish)."""
        self._sub = await self._client.subscribe(self._prefix + "*", cb=self._answer)

    async def _answer(self, msg: Msg) -> None:
        answer = self._waiting.pop(msg.subject[self._skip :], None)
        if answer is not None and not answer.done():
            answer.set_result(msg)

    async def publish(
        self, subject: str, data: bytes, timeout: float, headers: dict[str, str] | None
    ) -> bytes:
        """Publish and return JetStream's answer; nats-py's errors as ``Client.request``
        raises them (``TimeoutError`` after ``timeout`` s, ``NoRespondersError``)."""
        waiting = self._waiting
        loop = asyncio.get_running_loop()
        while len(waiting) >= self.window:
            room: asyncio.Future[None] = loop.create_future()
            self._blocked.append(room)
            try:
                await room
            finally:
                if room in self._blocked:
                    self._blocked.remove(room)
        self._count += 1
        token = f"{self._count:x}"
        answer: asyncio.Future[Msg] = loop.create_future()
        waiting[token] = answer
        timer = loop.call_later(timeout, _expire, answer)
        try:
            await self._client.publish(subject, data, self._prefix + token, headers)
            msg = await answer
        finally:
            timer.cancel()
            waiting.pop(token, None)
            if self._blocked:
                room = self._blocked.pop(0)
                if not room.done():
                    room.set_result(None)
        headers_in = msg.headers
        if headers_in and headers_in.get(_STATUS) == _NO_RESPONDERS:
            raise nats.errors.NoRespondersError
        return msg.data
