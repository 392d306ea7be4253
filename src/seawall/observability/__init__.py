"""Observability: traces, metrics, health probes and structured logs of a seawall system.

Part of the edges layer, built on the runtime's public middleware and
statistics (:class:`~seawall.Middleware`, :class:`~seawall.Stats`,
:meth:`~seawall.System.health`), never on its private parts:

- :class:`Tracing` (:mod:`.tracing`, ``seawall[otel]``): OpenTelemetry producer and
  consumer spans, W3C trace context in every message;
- :class:`Metrics` (:mod:`.metrics`, ``seawall[prometheus]``): Prometheus counters,
  handler-duration histograms, in-flight gauges;
- :class:`Probes` (:mod:`.http`): ``/metrics``, ``/healthz`` and ``/readyz`` over HTTP;
- :mod:`.logs`: ``--log-format json`` with each message's id, type, channel, group,
  attempt and trace id.

The optional libraries are imported only when their feature is used: ``import
seawall.observability`` works without them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .http import Probes
from .logs import JsonFormatter, LogContext
from .metrics import Metrics
from .serving import SystemSource, serve_observed

if TYPE_CHECKING:
    from .tracing import Tracing

__all__ = [
    "JsonFormatter",
    "LogContext",
    "Metrics",
    "Probes",
    "SystemSource",
    "Tracing",
    "serve_observed",
]


def __getattr__(name: str) -> Any:
    if name == "Tracing":
        try:
            from .tracing import Tracing
        except ImportError as exc:
            raise ImportError(
                f"seawall.observability.Tracing needs the OpenTelemetry API ({exc}): "
                "pip install 'seawall[otel]'"
            ) from exc
        return Tracing
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
