"""How ``seawall run`` runs a system with its observability options.

Part of the CLI: ``--log-format json`` adds the :class:`~seawall.observability.logs.LogContext`
middleware (each log line then names the message being handled), ``--metrics
HOST:PORT`` serves ``/metrics``, ``/healthz`` and ``/readyz`` beside the system
(:func:`~seawall.observability.serving.serve_observed`); without them the system
runs exactly as :meth:`~seawall.System.serve` runs it.
"""

from __future__ import annotations

from collections.abc import Callable

from .._runtime.system import System
from ..observability.logs import LogContext, LogFormat

__all__ = ["serve"]


async def serve(
    system: System,
    *,
    log_format: LogFormat,
    metrics: tuple[str, int] | None,
    ready: Callable[[], object] | None = None,
) -> None:
    """Run ``system`` until SIGTERM or SIGINT, observed as the options say; ``ready`` is
    called once every consumer has subscribed."""
    if log_format == "json":
        system.use(LogContext())
    if metrics is None:
        await system.serve(ready=ready)
        return
    from ..observability.serving import serve_observed

    await serve_observed(system, *metrics, ready=ready)
