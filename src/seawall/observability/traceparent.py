"""W3C trace context (``traceparent``) as text, without OpenTelemetry.

Sans-IO and dependency-free: the tracing middleware formats and parses the
``traceparent`` a :class:`~seawall.Message` carries with these (faster than a
generic propagator, on a path every message takes), and the JSON log format
reads the trace id from it when OpenTelemetry is not installed.
``00-<trace id: 32 hex>-<parent id: 16 hex>-<flags: 2 hex>``; version ``00``
only, all-zero ids are invalid (https://www.w3.org/TR/trace-context/).
"""

from __future__ import annotations

__all__ = ["format_traceparent", "parse_traceparent", "trace_id_of"]

_HEX = frozenset("0123456789abcdef")


def format_traceparent(trace_id: int, span_id: int, flags: int) -> str:
    """The ``traceparent`` header of a span."""
    return f"00-{trace_id:032x}-{span_id:016x}-{flags:02x}"


def parse_traceparent(value: str | None) -> tuple[int, int, int] | None:
    """(trace id, parent span id, flags) of a valid version-00 ``traceparent``, else None."""
    if value is None or len(value) != 55 or value[:3] != "00-" or value[35] != "-":
        return None
    if value[52] != "-" or not _HEX.issuperset(value[3:35] + value[36:52] + value[53:]):
        return None
    trace_id, span_id = int(value[3:35], 16), int(value[36:52], 16)
    if trace_id == 0 or span_id == 0:
        return None
    return trace_id, span_id, int(value[53:], 16)


def trace_id_of(value: str | None) -> str | None:
    """The trace id of a ``traceparent``, as 32 hex digits, or None if it is not valid."""
    parsed = parse_traceparent(value)
    return None if parsed is None else f"{parsed[0]:032x}"
