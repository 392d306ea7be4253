"""A system in this process, observed: what ``seawall run --metrics HOST:PORT`` runs.

Part of the edges layer. :class:`SystemSource` answers the probes
(:mod:`.http`) from one :class:`~seawall.System`: its health, and its endpoints'
snapshots (:mod:`.metrics`) rendered for Prometheus (:mod:`.exposition`).
:func:`serve_observed` installs the :class:`~.metrics.Metrics` middleware,
opens the probes *before* the system starts, so ``/readyz`` says 503 until
every consumer has subscribed, and runs the system until SIGTERM or SIGINT.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from .._runtime.health import Health
from .._runtime.system import System
from .http import Probes
from .metrics import Metrics, snapshot

__all__ = ["SystemSource", "serve_observed"]

log = logging.getLogger("seawall.observability")


class SystemSource:
    """The probes' view of one system (with its :class:`Metrics`, if installed)."""

    def __init__(self, system: System, metrics: Metrics | None = None) -> None:
        self.system = system
        self.metrics_middleware = metrics

    def health(self) -> Health:
        return self.system.health()

    def metrics(self) -> tuple[bytes, str]:
        from .exposition import CONTENT_TYPE, render

        endpoints = [((), e) for e in snapshot(self.system, self.metrics_middleware)]
        return render(endpoints, self.system.health()), CONTENT_TYPE


async def serve_observed(
    system: System, host: str, port: int, *, ready: Callable[[], object] | None = None
) -> None:
    """Run ``system`` until a signal, with ``/metrics``, ``/healthz``, ``/readyz`` on host:port;
    ``ready`` is called once every consumer has subscribed."""
    from . import exposition  # noqa: F401  (fail now, not at the first scrape, if not installed)

    metrics = Metrics()
    system.use(metrics)
    async with Probes(SystemSource(system, metrics), host, port) as probes:
        log.info("metrics on %s/metrics, probes on /healthz and /readyz", probes.url)
        await system.serve(ready=ready)
