"""The console's web server: a hand-written page, its state as JSON, live over SSE.

Starlette routes over a :class:`~.live.Console`:

* ``GET /`` the page (``static/index.html``, with its script and style shipped in
  the package: no build step, nothing fetched from elsewhere);
* ``GET /api/state`` the state once; ``GET /api/events`` the state every
  ``refresh`` seconds as server-sent events (the page's live updates);
* ``POST /api/dlq/redrive`` and ``/api/dlq/purge`` with ``{"dlq": …, "keys": […]}``
  and the operator token in the ``X-Seawall-Token`` header (refused, and logged,
  without it).

:func:`serve` runs it with uvicorn inside the caller's event loop, leaving
signals to the caller (``seawall up`` and ``seawall console`` handle them).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping
from importlib import resources
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from .._messages.payload import TypeRegistry
from .._transport.options import redact
from .._transport.schemes import connect
from .live import Action, Console, Refused

__all__ = ["REFRESH", "app", "open_console", "serve"]

REFRESH = 1.0
"""Seconds between two pushes of the state to an open page."""

STATIC = resources.files("seawall.console") / "static"


def app(console: Console, *, refresh: float = REFRESH) -> Starlette:
    """The console's web application."""
    closing = asyncio.Event()

    async def page(_: Request) -> Response:
        return FileResponse(str(STATIC / "index.html"))

    async def state(_: Request) -> Response:
        return JSONResponse(console.state())

    async def events(request: Request) -> Response:
        async def stream() -> AsyncIterator[str]:
            while not closing.is_set() and not await request.is_disconnected():
                yield f"data: {json.dumps(console.state(), default=str)}\n\n"
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(closing.wait(), refresh)

        headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
        return StreamingResponse(stream(), media_type="text/event-stream", headers=headers)

    async def act(request: Request) -> Response:
        action: Action = "redrive" if request.path_params["action"] == "redrive" else "purge"
        who = request.client.host if request.client else "?"
        token = request.headers.get("x-seawall-token")
        try:
            body: Any = await request.json()
            dlq, keys = str(body["dlq"]), [str(k) for k in body["keys"]]
        except (ValueError, KeyError, TypeError):
            return JSONResponse({"error": 'expected {"dlq": NAME, "keys": [KEY, …]}'}, 400)
        try:
            done = await console.act(action, dlq, keys, token=token or None, who=who)
        except Refused as exc:
            return JSONResponse({"error": str(exc)}, exc.status)
        return JSONResponse({"done": done})

    @contextlib.asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        try:
            yield
        finally:
            closing.set()

    routes = [
        Route("/", page),
        Route("/api/state", state),
        Route("/api/events", events),
        Route("/api/dlq/{action:str}", act, methods=["POST"]),
        Mount("/static", StaticFiles(directory=str(STATIC)), name="static"),
    ]
    return Starlette(routes=routes, lifespan=lifespan)


class _Server(uvicorn.Server):
    """uvicorn without its signal handlers: the command that runs it owns the signals."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@contextlib.asynccontextmanager
async def serve(console: Console, host: str, port: int) -> AsyncIterator[str]:
    """Serve the console on ``host:port`` while the block runs; yields its URL."""
    config = uvicorn.Config(
        app(console),
        host=host,
        port=port,
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=1,
    )
    server = _Server(config)
    # bound here, so that a port in use is an OSError to the caller (uvicorn would exit)
    sock = socket.create_server((host, port), reuse_port=False)
    async with asyncio.TaskGroup() as tasks:
        task = tasks.create_task(server.serve(sockets=[sock]))
        while not server.started and not task.done():  # noqa: ASYNC110 (uvicorn sets a flag)
            await asyncio.sleep(0.02)
        try:
            yield f"http://{host}:{sock.getsockname()[1]}/"
        finally:
            server.should_exit = True
    sock.close()


@contextlib.asynccontextmanager
async def open_console(
    url: str,
    listen: tuple[str, int],
    *,
    token: str | None = None,
    registry: TypeRegistry | None = None,
    dlqs: Iterable[str] = (),
    restarts: Callable[[], Mapping[int, int]] | None = None,
) -> AsyncIterator[str]:
    """The console of the system on transport ``url``, served on ``listen``; yields the page URL."""
    transport = connect(url)
    try:
        console = Console(
            transport,
            token=token,
            registry=registry,
            dlqs=dlqs,
            where=redact(url),
            restarts=restarts,
        )
        async with (
            console as c,
            serve(c, *listen) as page,
        ):
            yield page
    finally:
        await transport.close()
