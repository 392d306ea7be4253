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

The PUB command itself is written here too, for the common case: a connected client
and headers whose names are plain tokens (checked once per name, then remembered) and
whose values hold no line break or outer blank. nats-py's generic path checks each name
with a regular expression and copies each piece into a bytearray, per publish; this
one formats the header block in one go and hands nats-py the finished command (its
pending buffer and flusher, as ``Client.publish`` does). Anything else (a reconnecting
client, an odd header, a nats-py without those internals) goes through
``Client.publish``, so the bytes on the wire are the same either way. :meth:`Acks.send`
writes a plain message (no reply subject, no answer) the same way; for the core NATS
messages of the request/reply path, replies and direct requests,
:meth:`Acks.plain_command` writes the command from the message itself (its header lines
as ``to_headers`` would give them, without the dict).

The subscription lives as long as the connection: nats-py subscribes it again after a
reconnect. An answer lost with a broken link is a timeout, after which the publish is
tried again under the same ``Nats-Msg-Id`` (see ``NatsTransport._send``).
"""

from __future__ import annotations

import asyncio
import re
from typing import Any

import nats.errors
from msgspec.structs import astuple
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from ..._messages.envelope import Message, header_lines

__all__ = ["Acks"]

_STATUS = "Status"
_NO_RESPONDERS = "503"
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")  # a header name, as NATS takes it
_INTERNALS = ("_send_command", "_flush_pending", "_flush_queue", "_pending_data_size")


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
        self._direct = all(hasattr(client, name) for name in _INTERNALS)
        self._names: set[str] = set()  # header names known to be plain tokens

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
            command = self._command(subject, self._prefix + token, data, headers)
            if command is None:
                await self._client.publish(subject, data, self._prefix + token, headers)
            else:
                await self.write(command, len(data))
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

    async def send(self, subject: str, data: bytes, headers: dict[str, str] | None) -> None:
        """Publish a plain message (core NATS: nothing answers, nothing is stored)."""
        command = self._command(subject, "", data, headers)
        if command is None:
            await self._client.publish(subject, data, headers=headers)
        else:
            await self.write(command, len(data))

    def plain_command(self, subject: str, message: Message) -> bytes | None:
        """The HPUB command of ``message`` as a plain message (its CloudEvents headers as
        ``to_headers`` gives them, the payload as the body), or None where :meth:`send`
        should have them: headers not written this way, a client not connected, a message
        over the server's max_payload."""
        client = self._client
        if not self._direct or not client.is_connected or client.is_draining_pubs:
            return None
        lines = header_lines(message)
        if lines is None:
            return None
        extra = message.headers
        names = self._names
        if extra and not names.issuperset(extra):
            for name in extra:
                if name not in names:
                    if not _TOKEN.fullmatch(name):
                        return None
                    names.add(name)
        text = "\r\n".join(lines)
        breaks = len(lines) - 1
        if text.count("\r") != breaks or text.count("\n") != breaks:
            return None  # a line break in a value: nats-py blanks it
        # Every text field of the message is written as it is, times are written without
        # blanks: a field or extra header with an outer blank goes the generic way.
        values = [value for value in astuple(message) if type(value) is str]
        values += extra.values()
        if list(map(str.strip, values)) != values:
            return None  # an outer blank in a value: nats-py strips it
        block = f"NATS/1.0\r\n{text}\r\n\r\n".encode()
        data = message.data
        size = len(block)
        if size + len(data) > client.max_payload:
            return None  # the generic path says why it is refused
        return b"".join(
            (f"HPUB {subject} {size} {size + len(data)}\r\n".encode(), block, data, b"\r\n")
        )

    def _command(
        self, subject: str, reply: str, data: bytes, headers: dict[str, str] | None
    ) -> bytes | None:
        """The HPUB command, or None where ``Client.publish`` should build it."""
        client = self._client
        if not self._direct or not headers or not client.is_connected or client.is_draining_pubs:
            return None
        if len(data) > client.max_payload:
            return None  # nats-py raises its MaxPayloadError
        names = self._names
        if not names.issuperset(headers):  # a name not seen before: check each
            for name in headers:
                if name not in names:
                    if not _TOKEN.fullmatch(name):
                        return None
                    names.add(name)
        # The lines and the checks in C loops, without a Python step per header.
        lines = "\r\n".join(map(": ".join, headers.items()))
        breaks = len(headers) - 1
        if lines.count("\r") != breaks or lines.count("\n") != breaks:
            return None  # a line break in a value: nats-py blanks it
        values = list(headers.values())
        if list(map(str.strip, values)) != values:
            return None  # an outer blank in a value: nats-py strips it
        block = f"NATS/1.0\r\n{lines}\r\n\r\n".encode()
        size = len(block)
        head = f"HPUB {subject} {reply} " if reply else f"HPUB {subject} "
        return b"".join((f"{head}{size} {size + len(data)}\r\n".encode(), block, data, b"\r\n"))

    async def write(self, command: bytes, size: int) -> None:
        """What ``Client.publish`` does with a finished command."""
        client: Any = self._client
        client.stats["out_msgs"] += 1
        client.stats["out_bytes"] += size
        await client._send_command(command)
        if client._flush_queue is not None and client._flush_queue.empty():
            await client._flush_pending()
