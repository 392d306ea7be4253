"""Traces start at the gateway: a server span per HTTP request, when OpenTelemetry is there.

The span continues the caller's W3C ``traceparent`` header, if any, and the
messages the request causes carry the span's own context (as their cause's
``traceparent``), so the services' consumer spans (:mod:`seawall.observability.tracing`)
join the same trace, whether or not the gateway's system has the tracing
middleware. Without ``opentelemetry`` installed, the caller's ``traceparent``
is passed on unchanged, so a trace started upstream still continues.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from typing import Any

from ..observability.traceparent import format_traceparent, parse_traceparent

__all__ = ["ServerSpans"]


class ServerSpans:
    """The gateway's server spans: none without OpenTelemetry, or with ``enabled=False``."""

    def __init__(self, *, enabled: bool = True, tracer_provider: Any = None) -> None:
        self._trace: Any = None
        self._tracer: Any = None
        if not enabled:
            return
        try:
            from opentelemetry import trace
        except ImportError:
            return
        self._trace = trace
        self._tracer = trace.get_tracer("seawall.gateway", tracer_provider=tracer_provider)

    @contextlib.contextmanager
    def span(self, method: str, route: str, headers: Mapping[str, str]) -> Iterator[_Span]:
        """A server span around one request; ``.traceparent`` is what its messages carry."""
        incoming = headers.get("traceparent")
        if self._tracer is None:
            yield _Span(None, incoming if parse_traceparent(incoming) else None)
            return
        trace = self._trace
        parent = None
        parsed = parse_traceparent(incoming)
        if parsed is not None:
            remote = trace.SpanContext(
                parsed[0], parsed[1], is_remote=True, trace_flags=trace.TraceFlags(parsed[2])
            )
            parent = trace.set_span_in_context(trace.NonRecordingSpan(remote))
        attributes = {"http.request.method": method, "http.route": route}
        with self._tracer.start_as_current_span(
            f"{method} {route}", context=parent, kind=trace.SpanKind.SERVER, attributes=attributes
        ) as span:
            own = span.get_span_context()
            text = (
                format_traceparent(own.trace_id, own.span_id, own.trace_flags)
                if own.is_valid
                else incoming
            )
            yield _Span(span, text)


class _Span:
    __slots__ = ("_span", "traceparent")

    def __init__(self, span: Any, traceparent: str | None) -> None:
        self._span = span
        self.traceparent = traceparent

    def status(self, code: int) -> None:
        if self._span is not None:
            self._span.set_attribute("http.response.status_code", code)
            if code >= 500:
                self._span.set_status(self._span_status_error())

    def _span_status_error(self) -> Any:
        from opentelemetry.trace.status import Status, StatusCode

        return Status(StatusCode.ERROR)
