"""Events in and out over HTTP: server-sent event streams and the CloudEvents HTTP binding.

An :class:`EventHub` per :class:`~._routes.EventStream` reads the channel once
for the whole gateway instance (its own consumer group, from the latest
message, deleted when the gateway stops) and hands each event, in channel
order, to the clients whose key it matches. Each client holds a bounded
buffer; a client that falls that far behind is dropped (its stream ends, an
``EventSource`` reconnects), so one slow reader never holds up the others.

:func:`cloudevent_message` reads a CloudEvent from an HTTP request, in
binary mode (``ce-*`` headers, the body is the data) or structured mode
(``application/cloudevents+json``), into a seawall :class:`~seawall.Message`.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
from collections.abc import AsyncIterator, Mapping
from typing import Any

import msgspec

from .._exceptions import DecodeError, MessageError
from .._messages.envelope import Message, from_headers
from .._messages.payload import Payload, schema_uri
from .._runtime.node import Node
from ._errors import invalid
from ._routes import CloudEventsRoute, EventStream

__all__ = ["EventHub", "cloudevent_message", "sse_frame"]

log = logging.getLogger("seawall.gateway")

_END = b""
"""Put in a client's queue to end its stream."""


def sse_frame(message: Message, data: bytes) -> bytes:
    """One server-sent event: the message id, its type as the event name, its JSON."""
    return b"id: %s\nevent: %s\ndata: %s\n\n" % (message.id.encode(), message.type.encode(), data)


class _Client:
    __slots__ = ("key", "queue")

    def __init__(self, key: str | None, buffer: int) -> None:
        self.key = key
        self.queue: asyncio.Queue[bytes] = asyncio.Queue(buffer + 1)


class EventHub:
    """One subscription to a stream's channel, fanned out to its SSE clients."""

    def __init__(self, stream: EventStream, node: Node, group: str) -> None:
        self.stream = stream
        self.node = node
        self.group = group
        self.types = {cls.type_name: cls for cls in stream.types}
        self.clients: set[_Client] = set()
        self.ready = asyncio.Event()
        self.dropped = 0
        """Clients dropped for falling behind."""

    async def run(self) -> None:
        transport = self.node.transport
        sub = await transport.subscribe(
            self.stream.channel, group=self.group, prefetch=256, start="latest"
        )
        self.ready.set()
        try:
            async for delivery in sub:
                self._fan_out(delivery.message)
                await sub.ack(delivery)
        finally:
            for client in list(self.clients):
                self._end(client)
            await sub.close()

    def _fan_out(self, message: Message) -> None:
        cls = self.types.get(message.type)
        if cls is None or not self.clients:
            return
        try:
            payload = self.node.decode(message, cls)
        except MessageError as exc:
            log.warning("event %s on %s skipped: %s", message.id, self.stream.channel, exc)
            return
        key = self.stream.key
        value = None if key is None else str(getattr(payload, key))
        frame = sse_frame(message, msgspec.json.encode(payload))
        for client in list(self.clients):
            if client.key is not None and client.key != value:
                continue
            if client.queue.qsize() >= client.queue.maxsize - 1:
                self.dropped += 1
                self._end(client)
                continue
            client.queue.put_nowait(frame)

    def _end(self, client: _Client) -> None:
        self.clients.discard(client)
        with contextlib.suppress(asyncio.QueueFull):
            client.queue.put_nowait(_END)

    def join(self, key: str | None) -> _Client:
        client = _Client(key, self.stream.buffer)
        self.clients.add(client)
        return client

    async def frames(self, client: _Client) -> AsyncIterator[bytes]:
        """The client's events as SSE frames, until it leaves or is dropped."""
        try:
            yield b": connected\n\n"
            while True:
                frame = await client.queue.get()
                if frame is _END or not frame:
                    return
                yield frame
        finally:
            self.clients.discard(client)


_STRUCTURED = "application/cloudevents+json"


def cloudevent_message(
    route: CloudEventsRoute, node: Node, headers: Mapping[str, str], body: bytes
) -> tuple[Message, Payload]:
    """The message a CloudEvents POST carries, checked against the route's event classes."""
    content_type = headers.get("content-type", "")
    if content_type.split(";", 1)[0].strip().lower() == _STRUCTURED:
        message = _structured(body)
    elif "ce-specversion" in headers:
        try:
            message = from_headers(dict(headers), body, "ce-", percent_encoded=True)
        except DecodeError as exc:
            raise invalid("header", None, str(exc)) from None
    else:
        raise invalid(
            "header",
            "content-type",
            "not a CloudEvent: send ce-* headers (binary mode) or a body of content type "
            f"{_STRUCTURED} (structured mode)",
        )
    types = {cls.type_name: cls for cls in route.types}
    cls = types.get(message.type)
    if cls is None:
        raise invalid("body", "type", f"type {message.type!r} is not one of {sorted(types)}")
    if message.dataschema is None:
        message = msgspec.structs.replace(message, dataschema=schema_uri(cls))
    try:
        payload = node.decode(message, cls)
    except (MessageError, msgspec.ValidationError) as exc:
        raise invalid("body", "data", f"does not decode as {cls.type_name}: {exc}") from None
    return message, payload


def _structured(body: bytes) -> Message:
    try:
        event = msgspec.json.decode(body)
    except msgspec.DecodeError as exc:
        raise invalid("body", None, f"not JSON: {exc}") from None
    if not isinstance(event, dict):
        raise invalid("body", None, "a structured CloudEvent is a JSON object")
    data: Any = event.pop("data", None)
    encoded = event.pop("data_base64", None)
    raw = base64.b64decode(encoded) if isinstance(encoded, str) else msgspec.json.encode(data)
    headers = {f"ce-{k}": str(v) for k, v in event.items() if k != "datacontenttype"}
    headers["content-type"] = str(event.get("datacontenttype", "application/json"))
    try:
        return from_headers(headers, raw, "ce-")
    except DecodeError as exc:
        raise invalid("body", None, str(exc)) from None
