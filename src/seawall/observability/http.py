"""``/metrics``, ``/healthz`` and ``/readyz`` over HTTP, for Prometheus and orchestrators.

Part of the edges layer. :func:`respond` is the whole of the routing, pure:
fed a method and a path, it asks a :class:`Source` and returns a
:class:`Response`. :class:`Probes` is the thin asyncio server around it, a
task of the caller's event loop, opened and closed with ``async with``:

- ``GET /metrics``: the source's Prometheus text (``seawall_…``);
- ``GET /healthz``: 200 while live (no supervisor gave up), else 503;
- ``GET /readyz``: 200 while ready (running, every consumer subscribed), else
  503 — during start-up, while a consumer resubscribes, after a give-up, while
  draining; both bodies are the :class:`~seawall.Health` as JSON.

Why not Starlette and uvicorn, which the design names for HTTP: three fixed
GET routes need no framework, and uvicorn, embedded in a running loop, installs
its own SIGINT/SIGTERM handlers over the system's graceful drain;
prometheus-client's own server runs in a thread and serves only metrics. This
one reads the system's state in its own loop, without locks, and needs nothing
beyond the standard library. Requests are bounded (8 KiB of head, 5 s), each
connection answers one request and closes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from types import TracebackType
from typing import Protocol, Self

import msgspec

from .._exceptions import ConfigurationError
from .._runtime.health import Health

__all__ = ["Probes", "Response", "Source", "parse_listen", "respond"]

log = logging.getLogger("seawall.observability")

_HEAD_LIMIT = 8192
_REQUEST_TIMEOUT = 5.0
_REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed"}
_REASONS[503] = "Service Unavailable"
_JSON = "application/json"


class Source(Protocol):
    """What the probes report on: a system in this process, or ``seawall up``'s children."""

    def health(self) -> Health:
        """Live, ready, and why not."""
        ...

    def metrics(self) -> tuple[bytes, str]:
        """The metrics body and its content type."""
        ...


@dataclass(frozen=True, slots=True)
class Response:
    """One HTTP response."""

    status: int
    content_type: str
    body: bytes

    def encode(self, *, head: bool = False) -> bytes:
        """The response as bytes on the wire (without the body for HEAD)."""
        lines = [
            f"HTTP/1.1 {self.status} {_REASONS.get(self.status, '')}",
            f"Content-Type: {self.content_type}",
            f"Content-Length: {len(self.body)}",
            "Cache-Control: no-store",
            "Connection: close",
        ]
        return ("\r\n".join(lines) + "\r\n\r\n").encode() + (b"" if head else self.body)


def respond(source: Source, method: str, path: str) -> Response:
    """The response to ``method path``."""
    if method not in ("GET", "HEAD"):
        return Response(405, "text/plain", b"only GET and HEAD\n")
    route = path.split("?", 1)[0]
    if route == "/metrics":
        body, content_type = source.metrics()
        return Response(200, content_type, body)
    if route in ("/healthz", "/readyz"):
        health = source.health()
        ok = health.live if route == "/healthz" else health.ready
        return Response(200 if ok else 503, _JSON, msgspec.json.encode(health.to_dict()) + b"\n")
    return Response(404, "text/plain", b"try /metrics, /healthz or /readyz\n")


def parse_listen(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:9090`` for IPv6; port 0: any free one) as (host, port)."""
    host, sep, port = text.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise ConfigurationError(f"expected HOST:PORT such as 127.0.0.1:9464, got {text!r}")
    return host, int(port)


class Probes:
    """Serves :func:`respond` for ``source`` on ``host:port`` while the ``async with`` lasts."""

    def __init__(self, source: Source, host: str = "127.0.0.1", port: int = 0) -> None:
        self.source = source
        self.host = host
        self.port = port
        """The port listened on (the one chosen, once started, when 0 was asked)."""
        self._server: asyncio.Server | None = None
        self._open: set[asyncio.StreamWriter] = set()

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    async def __aenter__(self) -> Self:
        try:
            self._server = await asyncio.start_server(
                self._serve, self.host, self.port, limit=_HEAD_LIMIT
            )
        except OSError as exc:
            raise ConfigurationError(
                f"cannot serve metrics on {self.host}:{self.port}: {exc.strerror or exc}; "
                "choose another --metrics HOST:PORT"
            ) from exc
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()
            for writer in list(self._open):
                writer.close()  # their handlers end at once: nothing outlives the block
            await server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._open.add(writer)
        try:
            async with asyncio.timeout(_REQUEST_TIMEOUT):
                head = await reader.readuntil(b"\r\n\r\n")
            method, path = _request_line(head)
            response = respond(self.source, method, path) if method else _bad_request()
            writer.write(response.encode(head=method == "HEAD"))
            await writer.drain()
        except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, OSError):
            pass  # a client that went away or sent nonsense: nothing to answer
        except Exception:
            log.exception("the metrics endpoint failed to answer a request")
        finally:
            self._open.discard(writer)
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()


def _request_line(head: bytes) -> tuple[str, str]:
    first = head.split(b"\r\n", 1)[0].decode("latin-1").split(" ")
    return (first[0], first[1]) if len(first) == 3 else ("", "")


def _bad_request() -> Response:
    return Response(400, "text/plain", b"bad request\n")
