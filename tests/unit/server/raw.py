"""Helpers for the broker server tests: a client speaking frames by hand, a round trip."""

from __future__ import annotations

import asyncio
import contextlib

from seawall._wire.protocol import Frame, FrameReader, Hello, Welcome, encode_frame
from seawall.testing._conformance import Inbox, make_message
from seawall.transports.seawall import SeawallTransport

__all__ = ["RawClient", "round_trip"]


class RawClient:
    """A client writing frames (or any bytes) by hand."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.frames = FrameReader()
        self.received: list[Frame] = []

    @classmethod
    async def open(cls, port: int, hello: Hello | None = None) -> RawClient:
        client = cls(*await asyncio.open_connection("127.0.0.1", port))
        if hello is not None:
            client.send(hello)
            assert isinstance(await client.next(), Welcome)
        return client

    def send(self, frame: Frame) -> None:
        self.writer.write(encode_frame(frame))

    async def next(self, timeout: float = 5.0) -> Frame:
        async with asyncio.timeout(timeout):
            while not self.received:
                data = await self.reader.read(65536)
                assert data, "the server closed the connection"
                self.received += self.frames.feed(data)
        return self.received.pop(0)

    async def closed(self, timeout: float = 5.0) -> list[Frame]:
        """The frames that came before the server closed the connection (an end of
        stream, or a reset: a server closing a socket with bytes it has not read sends
        a reset, as it does to a client still trickling its Hello)."""
        got, self.received = self.received, []
        async with asyncio.timeout(timeout):
            with contextlib.suppress(ConnectionResetError):
                while data := await self.reader.read(65536):
                    got += self.frames.feed(data)
        self.writer.close()
        return got


async def round_trip(transport: SeawallTransport, channel: str) -> None:
    """Publish one message and receive it: the connection works."""
    sent = make_message(7)
    sub = await transport.subscribe(channel, group=f"check-{sent.id}", start="latest")
    await transport.publish(channel, sent)
    async with Inbox(sub, patience=5.0) as inbox:
        [got] = await inbox.collect(1)
        assert got.message == sent
        await sub.ack(got)
    await sub.close()
