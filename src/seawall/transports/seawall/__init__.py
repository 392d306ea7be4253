"""The ``seawall://`` transport: a client of the broker server (``seawall broker``).

URLs::

    seawall://host:port             TCP
    seawalls://host:port            TCP with TLS: the ``ssl`` context given, or
                                    the system's default trust store
    seawall+unix:///path/to.sock    a unix socket (``seawalls+unix://`` for TLS)

The token, if the broker requires one, is the ``token`` argument or the URL's
user part (``seawall://TOKEN@host:port``); it never appears in a repr or a log.
An ``ssl`` context passed with a plain ``seawall://`` URL turns TLS on too.
The other settings are :class:`~seawall.transports.SeawallOptions`, given in
code or in the URL's query (``seawall://host:4300?heartbeat=5&pipeline=256``).

The connection is opened by :meth:`SeawallTransport.connect`, or lazily by
the first call when the transport was built from a URL by
:func:`seawall.transports.connect`. Requests are pipelined over it; deliveries
flow within each subscription's credit. When the connection breaks, open
subscriptions raise :class:`~seawall.ConnectionLost`, waiting requests fail
with it too, and the next call tries once (within ``connect_timeout``) to
connect again, so a restarted broker is picked up and the runtime's
dispatchers subscribe again by themselves. A publish is the exception: one
whose link breaks, or finds it down, connects again and retries until stored,
within ``publish_timeout`` (:mod:`seawall._transport.publishing`), instead of
failing with ``ConnectionLost``. A first try stored just before the link broke
is not stored again: the broker drops the retry by its message id (its
duplicate window, ``EmbeddedOptions.dedupe_window``).

A channel declared with ``ChannelSpec(requests="direct")`` (the Declare frame
carries the choice) has its requests handed by the broker to a live member of
each group from memory, never appended to its log nor fsynced: one read, one
hand-over and one write on the server, no writer thread and no disk on the
way (see :mod:`seawall.transports.embedded` for what is lost when).

``ack`` and ``nack`` return once their frame is queued for the next write,
which carries everything queued in one loop turn; if the connection breaks
before it leaves, the delivery comes again (at-least-once, as for any
unsettled delivery).
"""

from __future__ import annotations

import asyncio
import os
import socket
import ssl as _ssl
from collections.abc import AsyncIterator, Mapping
from dataclasses import replace
from typing import Any, Unpack
from urllib.parse import unquote, urlsplit

from ..._clock import Clock, SystemClock
from ..._exceptions import ConfigurationError, ConnectionLost, MessageTooLarge, TransportClosed
from ..._messages.envelope import Message, encode_message
from ..._transport import Capabilities, ChannelSpec, Durability, Start
from ..._transport.publishing import until_stored
from ..._wire.protocol import (
    DEFAULT_MAX_FRAME,
    PROTOCOL_VERSION,
    Declare,
    Delete,
    Error,
    Frame,
    Hello,
    Publish,
    Subscribe,
    Welcome,
)
from ..._wire.state import Heartbeat
from ..._wire.streams import FramedStream
from .._options import SeawallOptions, SeawallSettings
from ._link import Link, SeawallSubscription

__all__ = ["SCHEMES", "SeawallOptions", "SeawallSubscription", "SeawallTransport"]

SCHEMES = ("seawall", "seawalls", "seawall+unix", "seawalls+unix")


class SeawallTransport:
    """A connection to a seawall broker server; see the module docstring."""

    def __init__(
        self,
        url: str,
        *,
        token: str | None = None,
        ssl: _ssl.SSLContext | None = None,
        clock: Clock | None = None,
        options: SeawallOptions | Mapping[str, Any] | None = None,
        **settings: Unpack[SeawallSettings],
    ) -> None:
        chosen, url = SeawallOptions.resolve(options, url=url, settings=settings)
        self.options = chosen
        """What this client runs with: ``options``, then the URL's query, then keywords."""
        parts = urlsplit(url)
        if parts.scheme not in SCHEMES:
            raise ConfigurationError(
                f"{parts.scheme!r} is not a seawall URL scheme; use one of {', '.join(SCHEMES)}"
            )
        self._unix = parts.scheme.endswith("+unix")
        self._host, self._port, self._path = _address(url, parts.scheme, self._unix)
        self.where = f"unix:{self._path}" if self._unix else f"{self._host}:{self._port}"
        """The broker's address, for messages (never the token)."""
        self._token = token or (unquote(parts.username) if parts.username else None)
        if ssl is None and parts.scheme.startswith("seawalls"):
            ssl = _ssl.create_default_context()
        self._ssl = ssl
        self.clock = clock or SystemClock()
        self.name = (chosen.name or f"{socket.gethostname()}/{os.getpid()}")[:255]
        self._heartbeat = chosen.heartbeat
        self._connect_timeout = chosen.connect_timeout
        self._pipeline = chosen.pipeline
        self.publish_timeout = chosen.publish_timeout
        self._link: Link | None = None
        self._lock = asyncio.Lock()
        self._closed = False
        self._capabilities = Capabilities(
            durability=Durability.MEMORY,
            partitions=True,
            delayed_redelivery=True,
            delayed_delivery=True,
        )

    def __repr__(self) -> str:
        return f"SeawallTransport({self.where!r}, tls={self._ssl is not None})"

    @classmethod
    async def connect(cls, url: str, **options: Any) -> SeawallTransport:
        """A transport connected to the broker at ``url``; options as for the constructor."""
        transport = cls(url, **options)
        await transport._ensure_link()
        return transport

    @property
    def capabilities(self) -> Capabilities:
        """What the broker declared when connecting (protocol defaults until then)."""
        return self._capabilities

    async def declare(self, spec: ChannelSpec) -> None:
        link = await self._ensure_link()
        await link.ask(Declare.of, spec)

    async def delete(self, channel: str, *, group: str | None = None) -> None:
        link = await self._ensure_link()
        await link.ask(Delete, channel, group)

    async def publish(
        self,
        channel: str,
        message: Message,
        *,
        not_before: float | None = None,
        priority: int = 0,
    ) -> None:
        data = encode_message(message)
        limit = self._capabilities.max_message_bytes
        if limit is not None and len(data) > limit:
            raise MessageTooLarge(
                f"message {message.id} ({message.type}) is {len(data)} bytes, over the "
                f"{limit}-byte limit of the broker at {self.where}; send a reference instead"
            )
        link = self._link
        try:
            if link is None or not link.open:
                link = await self._ensure_link()
            if link.pipeline.full:
                await link.room()
            await link.request(Publish, channel, data, not_before, max(priority, 0))
        except ConnectionLost:
            await self._publish_again(channel, data, not_before, max(priority, 0))

    async def _publish_again(
        self, channel: str, data: bytes, not_before: float | None, priority: int
    ) -> None:
        """The link broke under a publish (or was down): connect again and retry until
        stored, within ``publish_timeout``. The broker may have stored the first try
        before the link broke; its duplicate window drops the second by message id."""

        async def attempt(budget: float | None) -> bool:
            link = await self._ensure_link()
            if link.pipeline.full:
                await link.room()
            await link.request(Publish, channel, data, not_before, priority)
            return True

        await until_stored(self.clock, self.publish_timeout, attempt)

    async def subscribe(
        self,
        channel: str,
        *,
        group: str,
        prefetch: int = 64,
        start: Start = "earliest",
        idle_expiry: float | None = None,
    ) -> SeawallSubscription:
        if not 1 <= prefetch <= 65_536:
            raise ValueError(f"prefetch must be 1..65536, got {prefetch}")
        if idle_expiry is not None and not idle_expiry > 0:
            raise ValueError(f"idle_expiry must be more than 0 seconds, got {idle_expiry}")
        link = await self._ensure_link()
        sub = SeawallSubscription(link, channel, prefetch)
        await link.ask(Subscribe.of, channel, group, prefetch, start, idle_expiry, sub=sub)
        return sub

    async def close(self) -> None:
        self._closed = True
        link, self._link = self._link, None
        if link is not None:
            await link.close()

    def disconnect(self) -> None:
        """Drop the connection now, as a network failure right after the last write would.

        For fault tests: open subscriptions raise ConnectionLost at once, and
        the next call connects again.
        """
        if self._link is not None:
            self._link.abort()

    # -- connecting --------------------------------------------------------------------
    async def _ensure_link(self) -> Link:
        link = self._link
        if link is not None and link.open:
            return link
        async with self._lock:
            if self._closed:
                raise TransportClosed(f"the seawall transport to {self.where} is closed")
            if self._link is None or not self._link.open:
                if self._link is not None:
                    await self._link.close()  # its task and socket end before the next
                self._link = await self._open()
            return self._link

    async def _open(self) -> Link:
        try:
            async with asyncio.timeout(self._connect_timeout):
                reader, writer = await self._dial()
                stream = FramedStream(
                    reader,
                    writer,
                    max_frame=DEFAULT_MAX_FRAME,  # until Welcome states the broker's
                    heartbeat=self._heartbeat,
                    clock=self.clock,
                )
                try:
                    return await self._handshake(stream)
                except BaseException:
                    stream.abort()
                    raise
        except (OSError, TimeoutError) as exc:
            raise ConnectionLost(
                f"cannot reach the broker at {self.where} within {self._connect_timeout} s "
                f"({exc or type(exc).__name__}); is it running ('seawall broker')?"
            ) from exc

    async def _dial(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if self._unix:
            hostname = "localhost" if self._ssl else None
            return await asyncio.open_unix_connection(
                self._path, ssl=self._ssl, server_hostname=hostname
            )
        return await asyncio.open_connection(self._host, self._port, ssl=self._ssl)

    async def _handshake(self, stream: FramedStream) -> Link:
        stream.send(Hello(PROTOCOL_VERSION, self.name, self._heartbeat, self._token, batched=True))
        await stream.flush()
        batches = stream.batches()
        try:
            first, *rest = await anext(batches)
        except StopAsyncIteration:
            raise ConnectionLost(
                f"the broker at {self.where} closed the connection during the handshake"
            ) from None
        if isinstance(first, Error):
            raise first.exception()
        if not isinstance(first, Welcome) or rest:
            raise ConnectionLost(
                f"the server at {self.where} answered Hello with {type(first).__name__}, "
                "not Welcome; is it a seawall broker?"
            )
        return self._start(stream, batches, first)

    def _start(
        self, stream: FramedStream, batches: AsyncIterator[list[Frame]], welcome: Welcome
    ) -> Link:
        stream.heartbeat = Heartbeat(welcome.heartbeat, self.clock.time())
        stream.frames.max_frame = stream.peer_max_frame = welcome.max_frame
        self._capabilities = replace(
            self._capabilities,
            durability=Durability(welcome.durability),
            partitions=welcome.partitions,
            delayed_redelivery=welcome.delayed_redelivery,
            delayed_delivery=welcome.delayed_delivery,
            max_message_bytes=welcome.max_message,
            replay=welcome.replay,
            priorities=welcome.priorities,
            group_expiry=welcome.group_expiry,
        )
        link = Link(stream, batches, self.where, pipeline=self._pipeline, batched=welcome.batched)
        link.start()
        return link


def _address(url: str, scheme: str, unix: bool) -> tuple[str, int, str]:
    """Host, port and socket path of ``url`` (the unused ones empty)."""
    parts = urlsplit(url)
    if unix:
        if not parts.path:
            raise ConfigurationError(
                f"{scheme}:// URL without a socket path; write {scheme}:///path/to/broker.sock"
            )
        return "", 0, unquote(parts.path)
    try:
        port = parts.port
    except ValueError as exc:
        raise ConfigurationError(f"bad port in broker URL: {exc}") from None
    if not parts.hostname or port is None:
        raise ConfigurationError(
            f"a {scheme}:// URL needs a host and a port, as in {scheme}://127.0.0.1:4300"
        )
    return parts.hostname, port, ""
