"""One trace for a whole flow, on every transport: client → A → B, retried, dead-lettered.

Three systems (a client, service A, service B), each with its own
:class:`~seawall.observability.Tracing`, all exporting to one OpenTelemetry SDK
in-memory exporter, as three processes would to one collector. The client
requests A inside a span of its own; A publishes an event and replies; B fails
on the event twice, so the message is retried once and then dead-lettered. The
spans must form one trace: each consumer span a child of its producer span,
the retry linked to the first attempt, the dead letter an event with its
reason, the messaging semantic-convention attributes on each.

Rows reuse the conformance matrix's transport setups (and so its clean-up of
streams, queues and keys); in-process transports are shared by the three
systems, broker transports are one connection each.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from tests.conformance.test_matrix import Setup, embedded, memory, nats, rabbitmq, redis, served
from tests.conformance.test_matrix import _memory_backing as memory_backing

from seawall import Command, Context, Document, Event, RetryPolicy, Service, System, Transport
from seawall.observability import Tracing
from seawall.testing._delivery import wait_until


class Start(Command, frozen=True):
    order: str


class Started(Event, frozen=True):
    order: str


class Ack(Document, frozen=True):
    order: str


ROWS = [
    pytest.param(memory(), True, "seawall", id="memory"),
    pytest.param(embedded(), True, "seawall", id="embedded"),
    pytest.param(served(memory_backing), False, "seawall", id="seawall-tcp"),
    pytest.param(nats(), False, "nats", id="nats", marks=pytest.mark.integration),
    pytest.param(rabbitmq(), False, "rabbitmq", id="rabbitmq", marks=pytest.mark.integration),
    pytest.param(redis(), False, "redis", id="redis", marks=pytest.mark.integration),
]


def services(suffix: str) -> tuple[Service, Service]:
    a = Service(f"tra{suffix}")
    b = Service(f"trb{suffix}", retry=RetryPolicy(max_attempts=2, initial_backoff=0.05, jitter=0))

    @a.command
    async def start(cmd: Start, ctx: Context) -> Ack:
        await ctx.publish(Started(order=cmd.order))
        return Ack(order=cmd.order)

    @b.subscribe(a.events_channel)
    async def on_started(event: Started) -> None:
        raise RuntimeError(f"cannot ship {event.order}")

    return a, b


@pytest.mark.parametrize(("setup", "shared", "system_name"), ROWS)
async def test_one_trace_from_client_to_dead_letter(
    setup: Setup, shared: bool, system_name: str, tmp_path: Path
) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    suffix = uuid.uuid4().hex[:8]
    a, b = services(suffix)
    async with setup(tmp_path) as factory:
        first = await factory.make()
        made = [first] if shared else [first, await factory.make(), await factory.make()]
        try:
            await run_flow(made * 3 if shared else made, provider, a, b)
        finally:
            for transport in made:
                await transport.close()
    check_trace(exporter.get_finished_spans(), a, b, system_name)


async def run_flow(
    transports: list[Transport], provider: TracerProvider, a: Service, b: Service
) -> None:
    def traced(*svcs: Service, transport: Transport) -> System:
        return System(*svcs, transport=transport, middleware=[Tracing(tracer_provider=provider)])

    async with (
        traced(b, transport=transports[2]) as system_b,
        traced(a, transport=transports[1]),
        traced(transport=transports[0]) as client,
    ):
        with provider.get_tracer("test").start_as_current_span("client"):
            ack = await client.context().request(
                a.name, Start(order="o-1"), returns=Ack, timeout=10
            )
        assert ack == Ack(order="o-1")
        dispatcher = system_b.dispatchers[0]
        await wait_until(lambda: dispatcher.stats.dead_lettered == 1, 20.0, "the dead letter")


def check_trace(spans: tuple[ReadableSpan, ...], a: Service, b: Service, system: str) -> None:
    by_name: dict[str, list[ReadableSpan]] = {}
    for span in spans:
        by_name.setdefault(span.name, []).append(span)
    (client,) = by_name["client"]
    (request,) = by_name[f"request {a.name}"]
    (process_a,) = by_name[f"process {a.name}"]
    (publish,) = by_name[f"publish {a.events_channel}"]
    attempts = sorted(by_name[f"process {a.events_channel}"], key=_attempt)
    assert [_attempt(s) for s in attempts] == [1, 2]
    trace_ids = {span.context.trace_id for span in spans if span.context is not None}
    assert trace_ids == {_ctx(client).trace_id}, "every span belongs to the client's trace"

    assert _parent(request) == _ctx(client).span_id
    assert _parent(process_a) == _ctx(request).span_id
    assert _parent(publish) == _ctx(process_a).span_id
    assert all(_parent(s) == _ctx(publish).span_id for s in attempts)
    replies = by_name.get("reply (temporary)", [])
    assert all(_parent(s) == _ctx(request).span_id for s in replies)

    assert request.kind == publish.kind == SpanKind.PRODUCER
    assert process_a.kind == attempts[0].kind == SpanKind.CONSUMER
    _has(request, system, a.name, "send", "request")
    _has(publish, system, a.events_channel, "send", "publish")
    _has(process_a, system, a.name, "process", "process", group=a.name)
    for attempt in attempts:
        _has(attempt, system, a.events_channel, "process", "process", group=b.name)
        assert attempt.attributes is not None
        assert (
            attempt.attributes["messaging.message.id"] == publish.attributes["messaging.message.id"]
        )  # type: ignore[index]

    first, last = attempts
    assert [e.name for e in first.events] == ["exception", "seawall.retry"]
    assert [link.context.span_id for link in last.links] == [_ctx(first).span_id]
    assert [e.name for e in last.events] == ["exception", "seawall.dead_letter"]
    dead = last.events[1].attributes
    assert dead is not None
    assert dead["seawall.dead_letter.reason"] == "handler-error"
    assert dead["seawall.dead_letter.channel"] == f"{b.name}.dlq"
    assert not last.status.is_ok


def _ctx(span: ReadableSpan) -> Any:
    assert span.context is not None
    return span.context


def _parent(span: ReadableSpan) -> int | None:
    return None if span.parent is None else span.parent.span_id


def _attempt(span: ReadableSpan) -> int:
    assert span.attributes is not None
    value = span.attributes["seawall.attempt"]
    assert isinstance(value, int)
    return value


def _has(
    span: ReadableSpan,
    system: str,
    destination: str,
    operation: str,
    name: str,
    *,
    group: str | None = None,
) -> None:
    attributes = dict(span.attributes or {})
    assert attributes["messaging.system"] == system
    assert attributes["messaging.destination.name"] == destination
    assert attributes["messaging.operation.type"] == operation
    assert attributes["messaging.operation.name"] == name
    assert isinstance(attributes["messaging.message.id"], str)
    assert attributes.get("messaging.consumer.group.name") == group
