"""OpenTelemetry traces of a seawall system: a middleware, ``seawall[otel]``.

Part of the edges layer, built only on the runtime's public middleware
(:class:`~seawall.Middleware`); the only seawall module that imports
``opentelemetry`` (the API alone: the application picks the SDK and exporter)::

    system = System(orders, kitchen, transport=url, middleware=[Tracing()])

Spans follow the OpenTelemetry messaging semantic conventions:

- a **producer** span (``send orders``, ``publish orders.events``, kind
  ``PRODUCER``, ``messaging.operation.type = send``) around every send; its
  context goes into the message's W3C ``traceparent``/``tracestate`` (carried
  by every transport, as CloudEvents' distributed-tracing extension). Its parent
  is the current span (the handler's, a client's), else the trace the message
  inherited from the message that caused it;
- a **consumer** span (``process orders``, kind ``CONSUMER``,
  ``messaging.operation.type = process``) around every handler call, a child of
  the producer span read back from ``traceparent``, with the attempt number
  as ``seawall.attempt`` (the conventions have no broker-neutral name for it);
- a retry's consumer span **links** to the span of the attempt before it (kept
  here, bounded, so only when that attempt ran in this process), a failed
  attempt records its exception, and its fate is a span event:
  ``seawall.retry`` (delay), ``seawall.dead_letter`` (reason, why, dead-letter
  channel) or ``seawall.expired``;
- a request, its handling and its reply share one trace (the reply's producer
  span continues the request's trace), and so do scatter-gather's responders.

A message dead-lettered before any handler runs (its body does not decode, no
handler takes its type) or expired before it was handled has no consumer span:
middleware wraps handler calls. Its dead letter keeps its ``traceparent``, so
whoever replays it continues its trace.

When the tracer's sampler can never sample a trace's first span
(``ALWAYS_OFF``, or parent-based with an ``ALWAYS_OFF`` root, as
``OTEL_TRACES_SAMPLER=parentbased_always_off`` configures), a send outside any
trace and the handling of a message that carries no trace context make no span
at all: none could be recorded, and there is no trace to carry on. Messages
that arrive with a trace context still get their spans.

Attribute names: ``messaging.system`` (``nats``, ``rabbitmq``, ``redis``, or
``seawall`` for memory, embedded and ``seawall://``), ``messaging.destination.name``,
``messaging.consumer.group.name``, ``messaging.message.id``,
``messaging.message.conversation_id`` (the correlation id),
``messaging.operation.type`` / ``.name``, ``messaging.message.body.size``,
``messaging.destination.temporary`` (reply inboxes); seawall's own under ``seawall.``.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Awaitable
from typing import TYPE_CHECKING

import msgspec
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Link, NonRecordingSpan, SpanContext, SpanKind, TraceFlags
from opentelemetry.trace.span import TraceState
from opentelemetry.trace.status import Status, StatusCode

from .. import __version__
from .._messages.envelope import Message
from .._runtime.middleware import Handling, Middleware, NextHandle, NextSend, Outcome, Outgoing
from .traceparent import format_traceparent, parse_traceparent

if TYPE_CHECKING:
    from opentelemetry.context import Context as OtelContext
    from opentelemetry.trace import Span, Tracer, TracerProvider
    from opentelemetry.util.types import Attributes

    from .._runtime.system import System

__all__ = ["Tracing", "messaging_system"]

_SCOPE = "seawall"
_BY_MODULE = {"nats": "nats", "rabbitmq": "rabbitmq", "redis": "redis"}


def messaging_system(transport: object) -> str:
    """``messaging.system`` of a transport: its broker, or ``seawall`` for seawall's own."""
    module = type(transport).__module__.split(".")
    adapter = module[2] if module[:2] == ["seawall", "transports"] and len(module) > 2 else ""
    return _BY_MODULE.get(adapter, "seawall")


class Tracing(Middleware):
    """Producer and consumer spans for every send and handler call (see the module)."""

    def __init__(
        self,
        *,
        tracer_provider: TracerProvider | None = None,
        messaging_system: str | None = None,
        remember: int = 10_000,
    ) -> None:
        self._tracer: Tracer = trace.get_tracer(
            _SCOPE, __version__, tracer_provider=tracer_provider
        )
        self.system = messaging_system or "seawall"
        self._fixed_system = messaging_system is not None
        self._drops_roots = _drops_roots(self._tracer)
        self._earlier: OrderedDict[tuple[str, str], SpanContext] = OrderedDict()
        """The span of each message's last failed attempt, by (message id, group): for links."""
        self._remember = remember

    def attach(self, system: System) -> None:
        """Name ``messaging.system`` after the system's transport, unless given."""
        if not self._fixed_system:
            self.system = messaging_system(system.transport)

    # -- producer ---------------------------------------------------------------------------

    def send(self, out: Outgoing, call_next: NextSend) -> Awaitable[None]:
        """A producer span around the send; its context rides in the message."""
        # Not a coroutine itself: a send that makes no span costs no extra frame.
        if out.message.traceparent is None and self._drops_roots and not _in_a_span():
            return call_next(out)  # it would start a new trace, which the sampler drops
        return self._produce(out, call_next)

    async def _produce(self, out: Outgoing, call_next: NextSend) -> None:
        message = out.message
        parent = None
        if not trace.get_current_span().get_span_context().is_valid:
            parent = _remote_context(message)  # no span here: continue the message's trace
        temporary = out.kind == "reply"
        span = self._tracer.start_span(
            f"{out.kind} {'(temporary)' if temporary else out.channel}",
            context=parent,
            kind=SpanKind.PRODUCER,
            attributes=self._send_attributes(out, temporary),
        )
        try:
            await call_next(out.with_message(_carrying(message, span.get_span_context())))
        except BaseException as exc:
            _failed(span, exc)
            raise
        finally:
            span.end()

    def _send_attributes(self, out: Outgoing, temporary: bool) -> Attributes:
        message = out.message
        attributes: dict[str, str | int | bool] = {
            "messaging.system": self.system,
            "messaging.destination.name": out.channel,
            "messaging.operation.type": "send",
            "messaging.operation.name": out.kind,
            "messaging.message.id": message.id,
            "messaging.message.body.size": len(message.data),
            "seawall.message.type": message.type,
            "seawall.service": out.service,
        }
        if message.correlationid is not None:
            attributes["messaging.message.conversation_id"] = message.correlationid
        if temporary:
            attributes["messaging.destination.temporary"] = True
        return attributes

    # -- consumer ---------------------------------------------------------------------------

    def handle(self, call: Handling, call_next: NextHandle) -> Awaitable[object]:
        """A consumer span around the handler call, a child of the producer's span."""
        if call.message.traceparent is None and self._drops_roots:
            return call_next(call)  # no trace to carry on, and no new one to sample
        return self._process(call, call_next)

    async def _process(self, call: Handling, call_next: NextHandle) -> object:
        message = call.message
        parent = _remote_context(message)
        key = (message.id, call.group)
        earlier = self._earlier.pop(key, None)
        links = None if earlier is None else [Link(earlier, {"seawall.attempt": call.attempt - 1})]
        span = self._tracer.start_span(
            f"process {call.channel}",
            context=parent,
            kind=SpanKind.CONSUMER,
            attributes=self._handle_attributes(call),
            links=links,
        )
        token = otel_context.attach(trace.set_span_in_context(span))
        try:
            return await call_next(call)
        except BaseException as exc:
            _failed(span, exc)
            self._fate(span, call, key, exc)
            raise
        finally:
            otel_context.detach(token)
            span.end()

    def _handle_attributes(self, call: Handling) -> Attributes:
        message = call.message
        attributes: dict[str, str | int] = {
            "messaging.system": self.system,
            "messaging.destination.name": call.channel,
            "messaging.consumer.group.name": call.group,
            "messaging.operation.type": "process",
            "messaging.operation.name": "process",
            "messaging.message.id": message.id,
            "messaging.message.body.size": len(message.data),
            "seawall.message.type": message.type,
            "seawall.service": call.service,
            "seawall.handler": call.handler,
            "seawall.attempt": call.attempt,
        }
        if message.correlationid is not None:
            attributes["messaging.message.conversation_id"] = message.correlationid
        return attributes

    def _fate(self, span: Span, call: Handling, key: tuple[str, str], error: BaseException) -> None:
        """The outcome of a failed attempt, as an event; a retry is remembered for its link."""
        outcome = call.outcome(error)
        if outcome is None:
            return
        span.add_event(*_event(outcome, call.attempt))
        if outcome.action == "retry":
            self._earlier[key] = span.get_span_context()
            while len(self._earlier) > self._remember:
                self._earlier.popitem(last=False)


def _in_a_span() -> bool:
    """Whether a span is current (cheap when no OpenTelemetry context is set at all)."""
    return bool(otel_context.get_current()) and trace.get_current_span().get_span_context().is_valid


def _drops_roots(tracer: object) -> bool:
    """Whether ``tracer``'s sampler never samples a root span (read from its description)."""
    sampler = getattr(tracer, "sampler", None)
    describe = getattr(sampler, "get_description", None)
    if describe is None:
        return False
    description = str(describe())
    return description == "AlwaysOffSampler" or description.startswith(
        "ParentBased{root:AlwaysOffSampler,"
    )


def _event(outcome: Outcome, attempt: int) -> tuple[str, dict[str, str | float | int]]:
    if outcome.action == "retry":
        return "seawall.retry", {"seawall.retry.delay": outcome.delay, "seawall.attempt": attempt}
    if outcome.action == "expire":
        return "seawall.expired", {"seawall.attempt": attempt}
    return "seawall.dead_letter", {
        "seawall.dead_letter.reason": outcome.reason,
        "seawall.dead_letter.why": outcome.why,
        "seawall.dead_letter.channel": outcome.channel or "",
        "seawall.attempt": attempt,
    }


def _failed(span: Span, exc: BaseException) -> None:
    if span.is_recording():
        span.record_exception(exc)
        span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))


def _remote_context(message: Message) -> OtelContext | None:
    """The context of the span that sent ``message``, from its ``traceparent``; None if none."""
    parsed = parse_traceparent(message.traceparent)
    if parsed is None:
        return None
    trace_id, span_id, flags = parsed
    state = TraceState.from_header([message.tracestate]) if message.tracestate else None
    remote = SpanContext(trace_id, span_id, True, TraceFlags(flags), state)
    return trace.set_span_in_context(NonRecordingSpan(remote))


def _carrying(message: Message, context: SpanContext) -> Message:
    """``message`` with ``context`` as its trace context (unchanged if it is not valid)."""
    if not context.is_valid:
        return message  # no SDK: the API's no-op span
    state = context.trace_state.to_header() if context.trace_state else ""
    traceparent = format_traceparent(context.trace_id, context.span_id, context.trace_flags)
    return msgspec.structs.replace(message, traceparent=traceparent, tracestate=state or None)
