"""The broker server: serves any transport to ``seawall://`` clients over TCP or a unix socket.

:class:`BrokerServer` listens on ``host:port`` and/or a unix socket path
(optionally with TLS through an :class:`ssl.SSLContext`) and runs one
:class:`~seawall._server.session.Session` per connected client, each a task in the
server's own scope. The broker behind it is any object implementing
:class:`~seawall._transport.Transport` (the embedded durable broker in
production, the memory transport in tests); with ``auto_create=False`` it
must also offer ``has_channel(name) -> bool``. The server does not close
that transport: whoever made it does. Usage::

    async with BrokerServer(transport, host="127.0.0.1", port=4300) as server:
        await server.serve_forever()

Every connection counts against the config's ``max_connections`` from the
moment it is accepted, before its TLS handshake (done by the session, under
the Hello timeout, so a socket that never finishes it is dropped like one that
never says Hello). A connection over the limit is answered
``Error(None, "unavailable")`` (plain TCP; a TLS one is just closed) and
closed at once; a warning says so, at most every :data:`REFUSAL_LOG_INTERVAL`
seconds with the count refused since. :meth:`BrokerServer.statistics` tells
the counts.

Closing the server stops accepting, lets every session finish the requests it
has read, says Goodbye and closes its subscriptions (unsettled deliveries
come again).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import ssl as _ssl
from dataclasses import replace
from importlib.metadata import version
from types import TracebackType
from typing import Self

from .._clock import Clock, SystemClock
from .._exceptions import ConfigurationError
from .._tasks import TaskScope
from .._transport import Transport
from .._wire.protocol import MAX_HELLO, Error, encode_frame
from .._wire.streams import FramedStream
from .acl import ServerConfig
from .served import Served, ServerStatistics
from .session import Session

__all__ = ["BrokerServer", "ServerStatistics"]

log = logging.getLogger("seawall.server")

REFUSAL_LOG_INTERVAL = 10.0
"""Seconds between two warnings about connections refused at max_connections."""


class BrokerServer:
    """Serves ``transport`` to ``seawall://`` clients; an async context manager."""

    def __init__(
        self,
        transport: Transport,
        *,
        host: str | None = None,
        port: int = 0,
        path: str | os.PathLike[str] | None = None,
        ssl: _ssl.SSLContext | None = None,
        config: ServerConfig | None = None,
        clock: Clock | None = None,
    ) -> None:
        if host is None and path is None:
            raise ConfigurationError(
                "the broker server needs somewhere to listen: give host (and port) or path"
            )
        config = config or ServerConfig()
        if not config.auto_create and not callable(getattr(transport, "has_channel", None)):
            raise ConfigurationError(
                f"auto_create is off but {type(transport).__name__} has no has_channel(name) "
                "to tell which channels exist; turn auto_create on or serve another transport"
            )
        self.broker = Served(
            transport, config, clock or SystemClock(), f"seawall/{version('seawall')}"
        )
        self.host = host
        self.port = port
        self.path = None if path is None else os.fspath(path)
        self.ssl = ssl
        self._servers: list[asyncio.Server] = []
        self._bound_path = False
        self._sessions: dict[Session, asyncio.Task[None]] = {}
        self._scope = TaskScope()
        self._closed = asyncio.Event()
        self._refusals_logged = (float("-inf"), 0)  # when, and the refused count then

    @property
    def addresses(self) -> list[str]:
        """Where the server listens, as ``host:port`` and ``unix:path``."""
        found = []
        for server in self._servers:
            for sock in server.sockets:
                name = sock.getsockname()
                found.append(f"unix:{name}" if isinstance(name, str) else f"{name[0]}:{name[1]}")
        return found

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def start(self) -> None:
        """Start listening; on return clients can connect."""
        await self._scope.__aenter__()
        try:
            # no ssl= here: each session does its TLS handshake under the Hello timeout
            if self.host is not None:
                server = await asyncio.start_server(
                    self._accept, self.host, self.port, backlog=socket.SOMAXCONN
                )
                self._servers.append(server)
                self.port = server.sockets[0].getsockname()[1]
            if self.path is not None:
                self._servers.append(
                    await asyncio.start_unix_server(
                        self._accept, self.path, backlog=socket.SOMAXCONN
                    )
                )
                self._bound_path = True  # the socket file is ours to remove
        except OSError as exc:
            await self.close()
            raise ConfigurationError(f"the broker server cannot listen: {exc}") from exc
        config = self.broker.config
        access = (
            "OPEN to anyone who can connect (no tokens configured)"
            if config.open
            else f"for {len(config.tokens)} clients with tokens"
        )
        tls = "TLS" if self.ssl else "no TLS"
        log.info("broker server listening on %s, %s, %s", ", ".join(self.addresses), tls, access)

    def statistics(self) -> ServerStatistics:
        """A snapshot of the server's counters."""
        return replace(self.broker.stats, connections=len(self._sessions))

    def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._scope.closed or self._closed.is_set():
            writer.transport.abort()
            return
        if self.ssl is not None:  # not a byte read before the TLS handshake takes the socket
            transport = writer.transport
            assert isinstance(transport, asyncio.Transport)
            transport.pause_reading()
        peer = _peer_name(writer.get_extra_info("peername") or self.path or "?")
        if len(self._sessions) >= self.broker.config.max_connections:
            self._refuse(writer, peer)
            return
        self.broker.stats.accepted += 1
        stream = FramedStream(
            reader,
            writer,
            max_frame=MAX_HELLO,  # raised to max_frame once the client is welcome
            heartbeat=self.broker.config.heartbeat,
            clock=self.broker.clock,
        )
        accepted = self.broker.clock.time()
        session = Session(self.broker, stream, peer, tls=self.ssl, accepted=accepted)
        task = self._scope.create_task(session.run())
        self._sessions[session] = task
        task.add_done_callback(lambda _: self._sessions.pop(session, None))

    def _refuse(self, writer: asyncio.StreamWriter, peer: str) -> None:
        """Turn away a connection over max_connections, at once and with a word if plain."""
        stats, limit = self.broker.stats, self.broker.config.max_connections
        stats.refused += 1
        if self.ssl is None:
            why = (
                f"this broker already serves {limit} connections, its max_connections; "
                "try again later"
            )
            writer.write(encode_frame(Error(None, "unavailable", why)))
            writer.close()  # after the frame
        else:
            writer.transport.abort()
        now = self.broker.clock.time()
        when, count = self._refusals_logged
        if now - when >= REFUSAL_LOG_INTERVAL:
            self._refusals_logged = (now, stats.refused)
            log.warning(
                "broker server refused %s: %d connections are open, its max_connections "
                "(%d refused since the last warning); raise max_connections in the config, "
                "or find who opens so many",
                peer,
                limit,
                stats.refused - count,
            )

    async def serve_forever(self) -> None:
        """Serve until :meth:`close` is called (from another task) or this is cancelled."""
        await self._closed.wait()

    async def close(self) -> None:
        """Stop accepting, end every session gracefully, stop listening."""
        if self._closed.is_set():
            return
        self._closed.set()
        for server in self._servers:
            server.close()
        for session in self._sessions:
            session.stop()
        if self._sessions:  # each finishes its requests within a heartbeat interval
            await asyncio.wait(self._sessions.values(), timeout=self.broker.config.heartbeat + 2.0)
        await self._scope.__aexit__(None, None, None)
        for server in self._servers:
            await server.wait_closed()
        if self._bound_path and self.path is not None:
            with contextlib.suppress(OSError):
                os.unlink(self.path)
        log.info("broker server stopped")


def _peer_name(peer: object) -> str:
    if isinstance(peer, tuple) and len(peer) >= 2:
        return f"{peer[0]}:{peer[1]}"
    return f"unix:{peer}" if peer else "unix socket"
