"""The asyncio half of the wire protocol that both ends share.

:class:`FramedStream` wraps an asyncio stream pair: it cuts incoming bytes into
frames with :class:`~seawall._wire.protocol.FrameReader`, queues outgoing frames and
writes all that queued up during one loop turn with a single write and a
single ``drain()``, and keeps the peer's :class:`~seawall._wire.state.Heartbeat`.
The broker server (:mod:`seawall._server.server`) and the ``seawall://`` client
(:mod:`seawall.transports.seawall`) each run its loops in tasks they own.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import AsyncIterator, Callable

from .._clock import Clock
from .protocol import MAX_LENGTH, Frame, FrameReader, Ping, Pong, encode_frame_into
from .state import Heartbeat

__all__ = ["FramedStream"]

READ_SIZE = 256 * 1024
CLOSE_WAIT = 1.0
"""Longest wait for the last frames to leave when closing."""


class FramedStream:
    """Frames in, frames out, over one connection; see the module docstring."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        *,
        max_frame: int,
        heartbeat: float,
        clock: Clock,
    ) -> None:
        self.reader = reader
        self.writer = writer
        self.clock = clock
        self.frames = FrameReader(max_frame)
        self.heartbeat = Heartbeat(heartbeat, clock.time())
        self.peer_max_frame = MAX_LENGTH
        """The largest frame the peer accepts; known after the handshake."""
        self.before_write: Callable[[], None] | None = None
        """Called as queued frames are about to be written: the last moment to add some."""
        self._out = bytearray()
        self._ready = asyncio.Event()
        self._closing = False

    def send(self, frame: Frame) -> None:
        """Queue ``frame``; it leaves with the next write (this loop turn or the next)."""
        encode_frame_into(frame, self._out, max_frame=self.peer_max_frame)
        self._ready.set()

    def wake(self) -> None:
        """Have the next write happen though nothing was queued: ``before_write`` has some."""
        self._ready.set()

    async def read_frame(self) -> Frame | None:
        """Exactly one frame and not a byte more; None if the peer closed first.

        For the handshake, before the peer is trusted: a length over
        ``frames.max_frame`` raises :class:`~seawall.ProtocolError` as soon as
        its prefix is in, before any of the body is read, and what the peer
        sent after the frame stays unread for :meth:`batches`.
        """
        frames = self.frames
        while True:
            try:
                data = await self.reader.readexactly(frames.wanted())
            except asyncio.IncompleteReadError:
                return None
            self.heartbeat.received(self.clock.time())
            if got := frames.feed(data):
                return got[0]

    async def start_tls(self, context: ssl.SSLContext) -> None:
        """Upgrade the connection to TLS, as its server side.

        The socket must not have read anything yet (its transport paused since
        it was accepted), or the start of the peer's TLS handshake is lost. A
        peer gone before the upgrade completed raises ``ConnectionResetError``.
        """
        plain = self.writer.transport
        try:
            await self.writer.start_tls(context)
        except AttributeError:
            # CPython 3.11 hands the writer no transport when the peer left right after the
            # handshake, and fails on it; give the writer its (closed) plain one back, or
            # its __del__ fails too
            if self.writer.transport is not None:
                raise
            self.writer._transport = plain
            raise ConnectionResetError("the peer left right after the TLS handshake") from None

    async def batches(self) -> AsyncIterator[list[Frame]]:
        """The frames of each chunk read, until the peer closes; every chunk counts as life.

        A broken frame raises :class:`~seawall.ProtocolError`; a broken socket
        raises its ``OSError`` (``ConnectionError`` and kin).
        """
        while data := await self.reader.read(READ_SIZE):
            self.heartbeat.received(self.clock.time())
            frames = self.frames.feed(data)
            if frames:
                yield frames

    def answer_ping(self, frame: Frame) -> bool:
        """Answer a Ping with Pong; whether ``frame`` was a heartbeat frame (Ping or Pong)."""
        if isinstance(frame, Ping):
            self.send(Pong())
            return True
        return isinstance(frame, Pong)

    async def write_loop(self) -> None:
        """Write what is queued, one write and one drain per batch.

        Runs until cancelled, or returns when the socket fails (the reading side
        sees why).
        """
        with contextlib.suppress(OSError):
            while True:
                await self._ready.wait()
                self._ready.clear()
                await self.flush()

    async def flush(self) -> None:
        """Write what is queued now and wait until the socket has taken it."""
        if self.before_write is not None:
            self.before_write()
        if self._out:
            data, self._out = self._out, bytearray()
            self.writer.write(data)
            await self.writer.drain()

    async def keep_alive(self) -> None:
        """Ping a quiet peer; returns once the peer has been silent too long."""
        beat = self.heartbeat
        while True:
            now = self.clock.time()
            if beat.dead(now):
                return
            if beat.due(now):
                self.send(Ping())
                beat.pinged(now)
            await self.clock.sleep(beat.wake_at() - now)

    async def close(self, last: Frame | None = None) -> None:
        """Send ``last`` and what is still queued (bounded wait), then close the socket.

        Only the first call does anything: the end of a connection may be
        reached from both its reading task and its owner.
        """
        if self._closing:
            return
        self._closing = True
        with contextlib.suppress(Exception):
            if self.before_write is not None:
                self.before_write()  # what it holds goes before the last frame
            if last is not None:
                self.send(last)
            async with asyncio.timeout(CLOSE_WAIT):
                await self.flush()
        self.writer.close()
        with contextlib.suppress(Exception):
            async with asyncio.timeout(CLOSE_WAIT):
                await self.writer.wait_closed()
        self.abort()

    def abort(self, *, flush: bool = False) -> None:
        """Drop the connection at once, handing what is queued to the socket first if ``flush``."""
        if flush and self.before_write is not None:
            with contextlib.suppress(Exception):
                self.before_write()
        if flush and self._out and not self.writer.is_closing():
            data, self._out = self._out, bytearray()
            self.writer.write(data)
        self.writer.transport.abort()
