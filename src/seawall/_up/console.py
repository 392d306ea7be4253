"""``seawall up --console HOST:PORT``: the web console of the system ``seawall up`` runs.

Part of the edges layer; the console itself is :mod:`seawall.console`, a
client of the system's broker like any other (on the broker's unix socket, or
the file's transport), served from the ``seawall up`` process.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable

from .processes import Up

__all__ = ["web_console"]


@contextlib.asynccontextmanager
async def web_console(
    up: Up, listen: tuple[str, int] | None, token: str | None, say: Callable[[str], None]
) -> AsyncIterator[None]:
    """Serve the console of ``up`` on ``listen`` while the block runs (nothing if None)."""
    if listen is None:
        yield
        return
    from ..console.web import open_console  # the web stack is an optional extra

    def restarts() -> dict[int, int]:  # the supervisor here restarts processes
        return {i.pid: i.restarts for i in up.instances if i.pid is not None}

    async with open_console(up.transport_url, listen, token=token, restarts=restarts) as page:
        mode = "operator token set" if token else "read-only: no operator token"
        say(f"seawall up: console on {page} ({mode})")
        yield
