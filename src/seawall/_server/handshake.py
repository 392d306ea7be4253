"""Opening a connection on the broker server: TLS, Hello, token, admission, Welcome.

Until Welcome the server trusts nothing the peer sends, as the protocol's
handshake rules say (:mod:`seawall._wire.protocol`): :func:`handshake` reads
exactly one frame of at most :data:`~seawall._wire.protocol.MAX_HELLO` bytes
(a longer announced length closes the connection before its body is read), and
the TLS handshake, if any, and that frame must both be done within the
config's ``hello_timeout`` of the connection being accepted. So a connection
that never says Hello costs the server a few kilobytes for a few seconds.

Then the token is checked, the client is admitted under its own
``max_connections``, and Welcome is queued with the terms of the connection;
from there on the stream accepts frames up to the server's ``max_frame``.
Anything else ends the connection with :class:`Refused`.
"""

from __future__ import annotations

import dataclasses
import logging
import ssl
from dataclasses import dataclass

import msgspec

from .._clock import timeout_at
from .._exceptions import ProtocolError
from .._wire.protocol import PROTOCOL_VERSION, Error, Frame, Hello
from .._wire.state import Heartbeat
from .._wire.streams import FramedStream
from .acl import Client
from .served import Served

__all__ = ["Opened", "Refused", "handshake"]

log = logging.getLogger("seawall.server")


class Refused(Exception):
    """The connection ends before Welcome; ``last`` is the frame to leave with, if any."""

    def __init__(self, last: Frame | None) -> None:
        self.last = last


@dataclass(frozen=True)
class Opened:
    """A connection past Welcome: who it is, for logs, and its client (None: open server)."""

    name: str
    client: Client | None
    batched: bool = False
    """Whether the client reads Oks frames (its Hello said so)."""


async def handshake(
    broker: Served, stream: FramedStream, peer: str, tls: ssl.SSLContext | None, accepted: float
) -> Opened:
    """Open the connection accepted at ``accepted`` from ``peer``; see the module docstring."""
    try:
        hello = await _hello(broker, stream, peer, tls, accepted)
        opened = _authenticate(broker, hello, peer)
    except Refused:
        broker.stats.unwelcome += 1
        raise
    if opened.client is not None:
        _admit(broker, opened.client, opened.name)
    _welcome(broker, stream, hello)
    return dataclasses.replace(opened, batched=hello.batched)


async def _hello(
    broker: Served, stream: FramedStream, peer: str, tls: ssl.SSLContext | None, accepted: float
) -> Hello:
    clock, config = broker.clock, broker.config
    try:
        async with timeout_at(clock, accepted + config.hello_timeout):
            if tls is not None:
                await stream.start_tls(tls)
            hello = await stream.read_frame()
    except TimeoutError:
        log.info("broker server: closing %s: no Hello within %s s", peer, config.hello_timeout)
        raise Refused(None) from None
    except OSError as exc:  # ssl.SSLError included: a plain client on the TLS port
        log.info("broker server: lost %s before Hello: %s", peer, exc)
        raise Refused(None) from None
    except ProtocolError as exc:
        log.info("broker server: closing %s before Hello: %s", peer, exc)
        raise Refused(Error.of(None, exc)) from None
    if hello is None:
        raise Refused(None)
    if not isinstance(hello, Hello):
        log.info("broker server: closing %s: it sent %s first", peer, type(hello).__name__)
        raise Refused(
            Error(None, "bad-request", f"the first frame must be Hello, not {type(hello).__name__}")
        )
    return hello


def _authenticate(broker: Served, hello: Hello, peer: str) -> Opened:
    name = f"client {hello.client!r} at {peer}"
    config = broker.config
    if config.open:
        return Opened(name, None)
    client = config.authenticate(hello.token)
    if client is None:
        log.warning("broker server refused %s: no valid token", name)
        raise Refused(
            Error(
                None,
                "permission-denied",
                "this broker requires a token and the one given (if any) is not valid; "
                "pass the token configured for this client",
            )
        )
    return Opened(f"client {client.name!r} at {peer}", client)


def _admit(broker: Served, client: Client, name: str) -> None:
    """Count the connection for ``client``, or refuse it at the client's max_connections."""
    if broker.admit(client):
        return
    broker.stats.refused += 1
    held = broker.connected(client)
    log.warning("broker server refused %s: it holds %d connections, its limit", name, held)
    raise Refused(
        Error(
            None,
            "unavailable",
            f"client {client.name!r} already holds {held} connections to this broker, its "
            "max_connections; close one, or raise the client's max_connections in the "
            "broker's config",
        )
    )


def _welcome(broker: Served, stream: FramedStream, hello: Hello) -> None:
    """Queue Welcome and take the connection's terms: heartbeat, frame sizes."""
    config = broker.config
    interval = min(hello.heartbeat, config.heartbeat)
    stream.heartbeat = Heartbeat(interval, broker.clock.time())
    stream.frames.max_frame = stream.peer_max_frame = config.max_frame
    version = min(hello.version, PROTOCOL_VERSION)
    stream.send(msgspec.structs.replace(broker.welcome, version=version, heartbeat=interval))
