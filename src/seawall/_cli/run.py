"""What ``seawall run`` says when its services are up: where they run, and a warning for memory://.

Part of the CLI. The start line names the target, its services and the
transport (its URL without user part or query, which may hold credentials).
On ``memory://`` the services are alone in this process: nothing outside it can
send them a message, and what they hold is gone when it stops. That is right for
a first try and for tests, and wrong for anything else, so it is said plainly,
with what to use instead.
"""

from __future__ import annotations

from .._runtime.system import System
from .._transport.options import redact
from ..transports.memory import MemoryTransport

__all__ = ["memory_warning", "start_line"]


def start_line(target: str, system: System) -> str:
    """``seawall run: TARGET serving SERVICES on TRANSPORT; …``."""
    services = ", ".join(s.name for s in system.services)
    return (
        f"seawall run: {target} serving {services} on {_transport_name(system)}; "
        "Ctrl-C drains, a second Ctrl-C exits at once"
    )


def memory_warning(system: System, *, defaulted: bool) -> str | None:
    """The warning for a system on ``memory://`` (``defaulted``: nobody chose it), else None."""
    if not _on_memory(system):
        return None
    why = " (the default)" if defaulted else ""
    return (
        f"seawall run: warning: the transport is memory://{why}: these services are alone in "
        "this process, no other process can reach them, and their messages are gone when it "
        "stops. For services other processes can call, start `seawall broker --data ./data "
        "--listen 127.0.0.1:7400` and run with --transport seawall://127.0.0.1:7400 (or "
        "nats://, amqp://, redis://); --transport embedded://./data keeps messages on disk; "
        "SEAWALL_TRANSPORT sets it too"
    )


def _transport_name(system: System) -> str:
    url = system.transport_url
    return redact(url) if url is not None else type(system.transport).__name__


def _on_memory(system: System) -> bool:
    url = system.transport_url
    if url is not None:
        return url.partition("://")[0] == "memory"
    return isinstance(system.transport, MemoryTransport)
