"""Serving a gateway with uvicorn, inside the caller's event loop.

:func:`serving` runs a uvicorn server as a task of an ``async with`` block (the
tests, the benchmark, a ``seawall up`` gateway unit) and returns once it
listens; :func:`serve` runs one until SIGINT or SIGTERM (``seawall gateway``):
uvicorn stops accepting and finishes open requests, then the application's
lifespan drains the system. uvicorn's own signal handling is switched off:
the signals belong to seawall's (:mod:`seawall._runtime.interrupts`: the first
drains, a second Ctrl-C exits at once), which also ends the process with
status 0 after a clean drain instead of dying of the re-raised signal.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

from .._exceptions import ConfigurationError
from .._runtime.interrupts import interrupts

__all__ = ["serve", "serving"]


def _server(app: Any, host: str, port: int) -> Any:
    try:
        import uvicorn
    except ImportError as exc:  # pragma: no cover - the gateway extra brings it
        raise ConfigurationError(
            "the gateway needs uvicorn: pip install 'seawall[gateway]'"
        ) from exc

    class Server(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            yield  # the caller's signal handling stays in charge

    config = uvicorn.Config(
        app, host=host, port=port, lifespan="on", log_level="warning", access_log=False
    )
    return Server(config)


@contextlib.asynccontextmanager
async def serving(app: Any, host: str = "127.0.0.1", port: int = 0) -> AsyncIterator[str]:
    """Serve ``app`` on ``host:port`` for the block; yields its base URL (``http://h:p``)."""
    server = _server(app, host, port)
    # Not a TaskGroup: a failure in the block must still shut the server down in order
    # (lifespan shutdown, the system's drain), not cancel it half-way.
    task = asyncio.create_task(server.serve())
    try:
        # uvicorn says it listens by a plain flag, not an event
        while not server.started and not task.done():  # noqa: ASYNC110
            await asyncio.sleep(0.005)
        if not server.started:
            await task  # re-raises what stopped it
            raise ConfigurationError(f"the gateway could not listen on {host}:{port}")
        bound = server.servers[0].sockets[0].getsockname()[1] if port == 0 else port
        yield f"http://{host}:{bound}"
    finally:
        server.should_exit = True
        await task


async def serve(
    app: Any, host: str, port: int, *, ready: Callable[[str], object] | None = None
) -> None:
    """Serve ``app`` until SIGINT or SIGTERM, then shut down gracefully.

    ``ready`` is called with the base URL once the server listens.
    """
    stop = asyncio.Event()
    second = f"seawall: a second Ctrl-C: the gateway on {host}:{port} exits now"
    with interrupts(stop.set, second=second):
        async with serving(app, host, port) as url:
            if ready is not None:
                ready(url)
            await stop.wait()
