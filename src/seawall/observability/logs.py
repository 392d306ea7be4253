"""Structured logs: ``--log-format json``, one JSON object per line, with the message's fields.

Part of the edges layer. :class:`LogContext`, a middleware, makes the message
being handled known to every log call made while its handler runs (a context
variable, so concurrent handlers never mix); :class:`JsonFormatter` writes
each record as one JSON line with ``time``, ``level``, ``logger``, ``message``
and, inside a handler, ``message_id``, ``message_type``, ``channel``, ``group``,
``attempt``, ``service``, ``handler`` and ``trace_id`` (the current
OpenTelemetry span's trace, else the one in the message's ``traceparent``).
Fields a record carries itself (the dispatcher's retry and dead-letter lines,
written after the handler returned, pass the same names and the message's
``traceparent``, read as ``trace_id``; the supervisor's pass ``supervisor``,
``child``, ``restart``) are written too, and win. An exception goes in ``exception``.

:func:`configure_logging` is what ``seawall run`` and ``seawall up`` children
call: the level (validated by the CLI) and ``text`` or ``json``.
"""

from __future__ import annotations

import contextvars
import logging
import sys
from collections.abc import Awaitable
from datetime import UTC, datetime
from typing import Any, Literal

import msgspec

from .._runtime.middleware import Handling, Middleware, NextHandle
from .traceparent import trace_id_of

__all__ = [
    "FORMATS",
    "LEVELS",
    "JsonFormatter",
    "LogContext",
    "LogFormat",
    "configure_logging",
    "handling_fields",
]

LogFormat = Literal["text", "json"]
FORMATS: tuple[LogFormat, ...] = ("text", "json")
LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
"""The values ``--log-level`` takes (any case)."""

_current: contextvars.ContextVar[Handling | None] = contextvars.ContextVar(
    "seawall_handling", default=None
)
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "taskName",
}


class LogContext(Middleware):
    """Makes the message being handled known to the log records of its handler."""

    def handle(self, call: Handling, call_next: NextHandle) -> Awaitable[object]:
        return self._within(call, call_next)

    async def _within(self, call: Handling, call_next: NextHandle) -> object:
        token = _current.set(call)
        try:
            return await call_next(call)
        finally:
            _current.reset(token)


def handling_fields(call: Handling) -> dict[str, object]:
    """The structured fields of one handler call."""
    message = call.message
    return {
        "message_id": message.id,
        "message_type": message.type,
        "channel": call.channel,
        "group": call.group,
        "attempt": call.attempt,
        "service": call.service,
        "handler": call.handler,
        "trace_id": _trace_id(message.traceparent),
    }


def _trace_id(traceparent: str | None) -> str | None:
    otel_trace = sys.modules.get("opentelemetry.trace")
    if otel_trace is not None:  # only if something imported it: never imported from here
        context = otel_trace.get_current_span().get_span_context()
        if context.is_valid:
            return f"{context.trace_id:032x}"
    return trace_id_of(traceparent)


class JsonFormatter(logging.Formatter):
    """One JSON object per record (see the module docstring for its fields)."""

    def format(self, record: logging.LogRecord) -> str:
        fields: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        call = _current.get()
        if call is not None:
            fields.update(handling_fields(call))
        fields.update((k, v) for k, v in vars(record).items() if k not in _STANDARD)
        traceparent = fields.pop("traceparent", None)  # the dispatcher's lines carry it
        if fields.get("trace_id") is None and isinstance(traceparent, str):
            fields["trace_id"] = trace_id_of(traceparent)
        if record.exc_info:
            fields["exception"] = self.formatException(record.exc_info)
        present = {k: v for k, v in fields.items() if v is not None}
        return msgspec.json.encode(present, enc_hook=_default).decode(errors="replace")


def _default(value: object) -> str:
    return repr(value)


def configure_logging(level: str, log_format: LogFormat = "text", *, prefix: str = "") -> None:
    """Set up the root logger as the CLI does: ``level``, and ``text`` or ``json`` lines.

    ``prefix`` starts each text line (``seawall up`` children put their name there).
    """
    handler = logging.StreamHandler()
    if log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(
            logging.Formatter(f"%(asctime)s {prefix}%(levelname)s %(name)s: %(message)s")
        )
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
