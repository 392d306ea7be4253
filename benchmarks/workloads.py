"""The workloads: the asyncio.Queue anchor, publish → handler, request/reply, envelope only.

Each workload is a coroutine run by ``asyncio.run`` in a fresh event loop; it
returns a :class:`Sample` (operations finished and the seconds they took). A
workload stops at ``count`` operations or at ``time_limit`` seconds, whichever
comes first, so a slow build still finishes in bounded time.

The seawall workloads use only the public API, on a fresh :class:`System` per
run over the default :class:`MemoryTransport` (what ``memory://`` and ``System()``
give: messages kept as objects, the sender's payload handed to a handler of its class,
the benchmark's payloads being immutable all the way down), and send
``warmup`` messages untimed first so that per-system caches are filled.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, ClassVar

import msgspec

import seawall
from seawall import Context, MemoryTransport, Service, System

__all__ = [
    "PAYLOAD",
    "PAYLOAD_BYTES",
    "Probe",
    "ProbeResult",
    "Reading",
    "Sample",
    "Settings",
    "Workload",
    "envelope_only",
    "hop_floor",
    "publish_to_handler",
    "queue_anchor",
    "request_reply",
]

SERVICE = "bench"
READINGS = "bench.readings"
CHECK_EVERY = 1024
"""Operations between two looks at the clock in the throughput loops."""


class Reading(seawall.Event, frozen=True):
    """The published payload: about 100 bytes of JSON."""

    type_name: ClassVar[str] = "bench.Reading"
    sensor: str
    seq: int
    value: float
    unit: str
    site: str


class Probe(seawall.Command, frozen=True):
    """The request of the round-trip workload; the same fields as :class:`Reading`."""

    type_name: ClassVar[str] = "bench.Probe"
    sensor: str
    seq: int
    value: float
    unit: str
    site: str


class ProbeResult(seawall.Document, frozen=True):
    """The reply to a :class:`Probe`."""

    type_name: ClassVar[str] = "bench.ProbeResult"
    seq: int
    accepted: bool


PAYLOAD = Reading(
    sensor="boiler-7/temperature",
    seq=1_048_576,
    value=71.25,
    unit="celsius",
    site="plant-north/hall-3",
)
PAYLOAD_BYTES = len(msgspec.json.encode(PAYLOAD))
PROBE = Probe(**msgspec.structs.asdict(PAYLOAD))


@dataclass(frozen=True, kw_only=True)
class Settings:
    """How much one run of a workload does."""

    count: int
    """Operations per run."""
    time_limit: float
    """Seconds after which a run stops early."""
    window: int = 1024
    """The anchor's queue bound, and messages the publisher keeps in flight."""
    concurrency: int = 64
    """Handlers the benchmark service runs at once (``Service(concurrency=…)``)."""
    warmup: int = 1000
    """Untimed operations at the start of each seawall run."""
    middleware: tuple[Any, ...] = ()
    """Middleware of the publish → handler system (the observability benchmark's tracing)."""


@dataclass(frozen=True, kw_only=True)
class Sample:
    """What one run measured."""

    operations: int
    seconds: float
    p50_us: float | None = None
    p99_us: float | None = None

    @property
    def rate(self) -> float:
        """Operations per second."""
        return self.operations / self.seconds


Workload = Callable[[Settings], Coroutine[Any, Any, Sample]]


# -- (a) the anchor ------------------------------------------------------------


async def queue_anchor(settings: Settings) -> Sample:
    """A producer puts the payload object into a bounded queue; a consumer takes it."""
    queue: asyncio.Queue[Reading | None] = asyncio.Queue(maxsize=settings.window)
    async with asyncio.TaskGroup() as tasks:
        consumer = tasks.create_task(_consume(queue))
        start = time.perf_counter()
        sent = await _fill(queue, settings.count, start + settings.time_limit)
        received = await consumer
        elapsed = time.perf_counter() - start
    if received != sent:
        raise AssertionError(f"anchor: consumer got {received} of {sent} objects")
    return Sample(operations=received, seconds=elapsed)


async def _fill(queue: asyncio.Queue[Reading | None], count: int, deadline: float) -> int:
    sent = 0
    while sent < count:
        await queue.put(PAYLOAD)
        sent += 1
        if sent % CHECK_EVERY == 0 and time.perf_counter() >= deadline:
            break
    await queue.put(None)  # end of stream
    return sent


async def _consume(queue: asyncio.Queue[Reading | None]) -> int:
    received = 0
    while await queue.get() is not None:
        received += 1
    return received


# -- (d) the envelope alone ----------------------------------------------------


async def envelope_only(settings: Settings) -> Sample:
    """What every message costs before any transport or dispatch: the floor under (b).

    Builds the envelope as ``ctx.publish`` does (id, time, payload encoding),
    frames and unframes it as the memory transport does, and decodes the
    payload as the dispatcher does. Uses seawall's private modules on purpose:
    it measures exactly those steps.
    """
    from seawall._messages.envelope import decode_message, encode_message

    async with System(transport=MemoryTransport()) as system:
        node = system.node
        start = time.perf_counter()
        done = 0
        while done < settings.count:
            message = decode_message(encode_message(node.envelope(PAYLOAD, source="bench")))
            node.decode(message, Reading)
            done += 1
            if done % CHECK_EVERY == 0 and time.perf_counter() >= start + settings.time_limit:
                break
        elapsed = time.perf_counter() - start
    return Sample(operations=done, seconds=elapsed)


# -- (b) publish → handler -----------------------------------------------------


class Tally:
    """Counts handled messages; the producer waits on it for a count to be reached."""

    def __init__(self) -> None:
        self.handled = 0
        self._mark = math.inf
        self._reached = asyncio.Event()

    def hit(self) -> None:
        self.handled += 1
        if self.handled >= self._mark:
            self._mark = math.inf
            self._reached.set()

    async def reach(self, mark: int) -> None:
        """Return once ``mark`` messages have been handled in all."""
        if self.handled >= mark:
            return
        self._mark = mark
        self._reached.clear()
        await self._reached.wait()


async def publish_to_handler(settings: Settings) -> Sample:
    """A producer publishes events; one subscribed handler counts them."""
    tally = Tally()
    service = Service(SERVICE, concurrency=settings.concurrency)

    @service.subscribe(READINGS)
    async def on_reading(reading: Reading) -> None:
        tally.hit()

    system = System(service, transport=MemoryTransport(), middleware=settings.middleware)
    async with system:
        ctx = system.context("bench-producer")
        await _produce(ctx, tally, settings.warmup, settings.window, math.inf)
        start = time.perf_counter()
        sent = await _produce(
            ctx, tally, settings.count, settings.window, start + settings.time_limit
        )
        elapsed = time.perf_counter() - start
    return Sample(operations=sent, seconds=elapsed)


async def _produce(ctx: Context, tally: Tally, count: int, window: int, deadline: float) -> int:
    """Publish up to ``count`` events, at most ``window`` unhandled; return once all are handled.

    Publishing to the memory transport does not yield until its channel holds
    100,000 messages, so without the window the producer would run far ahead
    of the handler instead of alongside it.
    """
    base = tally.handled
    sent = 0
    while sent < count:
        if base + sent - tally.handled >= window:
            await tally.reach(base + sent - window // 2)
        await ctx.publish(PAYLOAD, channel=READINGS)
        sent += 1
        if sent % CHECK_EVERY == 0 and time.perf_counter() >= deadline:
            break
    await tally.reach(base + sent)
    return sent


# -- (c) request/reply ---------------------------------------------------------


async def request_reply(settings: Settings) -> Sample:
    """One client sends requests one after another; a command handler replies."""
    return await _request_reply(settings, Service(SERVICE, concurrency=settings.concurrency))


async def request_reply_inline(settings: Settings) -> Sample:
    """:func:`request_reply` to a service with ``requests="direct"``: on ``memory://`` each
    request is answered in the client's task (no broker log, no worker hop)."""
    service = Service(SERVICE, concurrency=settings.concurrency, requests="direct")
    return await _request_reply(settings, service)


async def _request_reply(settings: Settings, service: Service) -> Sample:

    @service.command
    async def probe(cmd: Probe) -> ProbeResult:
        return ProbeResult(seq=cmd.seq, accepted=True)

    async with System(service, transport=MemoryTransport()) as system:
        ctx = system.context("bench-client")
        await _round_trips(ctx, settings.warmup, math.inf)
        start = time.perf_counter()
        latencies = await _round_trips(ctx, settings.count, start + settings.time_limit)
        elapsed = time.perf_counter() - start
    return Sample(
        operations=len(latencies),
        seconds=elapsed,
        p50_us=percentile(latencies, 0.50) / 1000,
        p99_us=percentile(latencies, 0.99) / 1000,
    )


async def _round_trips(ctx: Context, count: int, deadline: float) -> list[int]:
    """Latency in nanoseconds of each of up to ``count`` sequential requests."""
    clock = time.perf_counter_ns
    stop_ns = math.inf if math.isinf(deadline) else deadline * 1e9
    latencies: list[int] = []
    for seq in range(count):
        request = msgspec.structs.replace(PROBE, seq=seq)
        begin = clock()
        reply = await ctx.request(SERVICE, request, returns=ProbeResult)
        end = clock()
        if reply.seq != seq:
            raise AssertionError(f"request {seq} got the reply to {reply.seq}")
        latencies.append(end - begin)
        if end >= stop_ns:
            break
    return latencies


# -- (e) the event loop's share of (c) ---------------------------------------------

HOPS = 4
"""Task wake-ups per seawall round trip: client -> command reader -> worker -> inbox -> client."""


async def hop_floor(settings: Settings) -> Sample:
    """Round trips of a bare ring of ``HOPS`` tasks handing a future on: no seawall at all.

    Each seawall request/reply wakes four tasks in turn (the dispatcher's
    reader, a worker, the reply inbox's reader, the client), each in a loop
    turn of its own. This ring does only that, so its rate bounds (c) from
    above whatever seawall's own code costs.
    """
    loop = asyncio.get_running_loop()
    waiting: list[asyncio.Future[None] | None] = [None] * HOPS

    def pass_on(hop: int) -> None:
        future, waiting[hop] = waiting[hop], None
        assert future is not None
        future.set_result(None)

    async def relay(hop: int) -> None:
        while True:
            future = waiting[hop] = loop.create_future()
            await future
            pass_on((hop + 1) % HOPS)

    async with asyncio.TaskGroup() as tasks:
        relays = [tasks.create_task(relay(hop)) for hop in range(1, HOPS)]
        await asyncio.sleep(0)  # every relay waits for its turn
        clock = time.perf_counter
        start = clock()
        done = 0
        while done < settings.count:
            future = waiting[0] = loop.create_future()
            pass_on(1)
            await future
            done += 1
            if done % CHECK_EVERY == 0 and clock() >= start + settings.time_limit:
                break
        elapsed = clock() - start
        for task in relays:
            task.cancel()
    return Sample(operations=done, seconds=elapsed)


def percentile(values: list[int], fraction: float) -> float:
    """The nearest-rank percentile of ``values`` (``fraction`` in [0, 1])."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(fraction * len(ordered)))
    return float(ordered[rank - 1])
