"""Tracing in one process: scatter-gather keeps one trace, sampling off and no SDK add nothing."""

from __future__ import annotations

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF
from opentelemetry.trace import NoOpTracerProvider

from seawall import Command, Context, Document, MemoryTransport, Message, Service, System
from seawall.observability import Tracing
from seawall.observability.tracing import messaging_system
from seawall.testing import TestSystem
from seawall.transports.nats import NatsTransport


class Quote(Command, frozen=True):
    item: str


class Offer(Document, frozen=True):
    cents: int


def bidder(i: int) -> Service:
    svc = Service(f"bidder{i}")

    @svc.subscribe("quotes", group=f"bidder{i}")
    async def bid(quote: Quote) -> Offer:
        return Offer(cents=100 + i)

    return svc


def bidders(n: int) -> list[Service]:
    return [bidder(i) for i in range(n)]


async def test_scatter_gather_keeps_one_trace() -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    ts = TestSystem(*bidders(2))
    ts.system.use(Tracing(tracer_provider=provider))
    async with ts:
        with provider.get_tracer("test").start_as_current_span("client"):
            offers = await ts.context().gather("quotes", Quote(item="x"), returns=Offer, timeout=5)
        await ts.settle()
    assert sorted(o.cents for o in offers) == [100, 101]
    spans = exporter.get_finished_spans()
    assert len({s.context.trace_id for s in spans if s.context}) == 1
    gather = next(s for s in spans if s.name == "gather quotes")
    processes = [s for s in spans if s.name == "process quotes"]
    assert len(processes) == 2
    assert all(s.parent is not None and gather.context is not None for s in processes)
    assert {s.parent.span_id for s in processes if s.parent} == {gather.context.span_id}


async def sent_messages(tracing: Tracing) -> list[Message]:
    svc = Service("sink")
    seen: list[Message] = []

    @svc.subscribe("things")
    async def on_quote(quote: Quote, ctx: Context) -> None:
        assert ctx.message is not None
        seen.append(ctx.message)

    ts = TestSystem(svc)
    ts.system.use(tracing)
    async with ts:
        await ts.context().send("things", Quote(item="x"))
        await ts.settle()
    return seen


async def test_sampling_off_adds_no_trace_context_and_makes_no_span() -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider(sampler=ALWAYS_OFF)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    (message,) = await sent_messages(Tracing(tracer_provider=provider))
    assert message.traceparent is None
    assert exporter.get_finished_spans() == ()


async def test_the_api_alone_leaves_messages_untouched() -> None:
    (message,) = await sent_messages(Tracing(tracer_provider=NoOpTracerProvider()))
    assert message.traceparent is None


def test_messaging_system_names_the_broker() -> None:
    assert messaging_system(MemoryTransport()) == "seawall"
    assert messaging_system(NatsTransport.__new__(NatsTransport)) == "nats"
    assert Tracing(messaging_system="kafka").system == "kafka"
    System(transport=MemoryTransport(), middleware=[tracing := Tracing()])
    assert tracing.system == "seawall"
    svc = Service("traced")
    svc.use(own := Tracing())  # a service's middleware learns the system it joins
    System(svc, transport=NatsTransport.__new__(NatsTransport))
    assert own.system == "nats"
