"""``seawall up --metrics HOST:PORT``: one ``/metrics``, ``/healthz``, ``/readyz`` for all children.

Part of the edges layer. The children already write their counters to status
files a few times a second for the live table (:mod:`seawall._up.child`); with
``--metrics`` those files also carry each endpoint's snapshot, handler timings
included. :class:`UpSource` answers the probes (:mod:`seawall.observability.http`)
from what :class:`~seawall._up.processes.Up` read last: every instance's
endpoints, labelled ``process="kitchen-1"``, summed over its earlier processes
so a restart never makes a counter go back. Nothing is aggregated inside the
children, nothing is shared between processes but those files, and a child that
dies takes nothing with it. Why not prometheus-client's multiprocess mode: it
keeps gauges and histograms in memory-mapped files per pid that must be cleaned
up by hand when a process dies, and ``seawall up`` already has the files.

Live: ``seawall up`` has not given up on an instance. Ready: every instance
runs and has reported its services subscribed.
"""

from __future__ import annotations

from .._runtime.health import Health
from .processes import Up

__all__ = ["UpSource"]


class UpSource:
    """The probes' view of a system of processes under ``seawall up``."""

    def __init__(self, up: Up) -> None:
        self.up = up

    def health(self) -> Health:
        up = self.up
        reasons = [] if up.failure is None else [str(up.failure)]
        reasons += [f"{i.name} is {i.state}" for i in up.instances if i.state != "running"]
        return Health(live=up.failure is None, ready=not reasons, reasons=tuple(reasons))

    def metrics(self) -> tuple[bytes, str]:
        from ..observability.exposition import CONTENT_TYPE, render

        instances = self.up.refresh()
        endpoints = [((i.name,), e) for i in instances for e in i.endpoints()]
        return render(endpoints, self.health(), extra_labels=("process",)), CONTENT_TYPE
