"""``python -m benchmarks.rabbitmq_compare``: seawall on RabbitMQ beside aio-pika and FastStream.

Everything runs in this one process, against the same RabbitMQ server
(``SEAWALL_BENCH_RABBITMQ_URL``, default ``amqp://guest:guest@127.0.0.1:5672/``),
with the same ~100-byte JSON payload decoded into a typed message by every
consumer, the same in-flight window, and the same durability: quorum queues,
persistent messages, confirmed publishes (what seawall's transport always does).

1. **pub/sub end to end**: ``--count`` messages published in windows of
   ``--window`` concurrent confirmed publishes while a consumer with prefetch
   ``--window`` decodes and acks each one; messages per second from the first
   publish to the last ack. Four contestants:

   * raw aio-pika (``default_exchange.publish`` / ``queue.consume`` + ``ack``);
   * seawall's transport (``RabbitMQTransport.publish`` / subscription + ``ack``);
   * the seawall runtime (``Context.publish`` / a ``Service`` handler: decode,
     dispatch, ack after the handler);
   * FastStream (``RabbitBroker.publish(persist=True)`` / a ``@subscriber``
     taking a pydantic model).

2. **request/reply p50**: one request after another, ``--rounds`` times each, the
   contestants taking turns call by call (so the machine's slow spells hit all): raw
   aio-pika RPC (request on a quorum queue, reply through an exclusive reply
   queue matched by correlation id), seawall's transport alone (two
   ``RabbitMQTransport`` s, a reader that answers each request into the
   requester's inbox: what the runtime costs shows as the difference to the
   next line), seawall (two ``System`` s, so the reply goes through the broker
   to the requester's inbox), FastStream ``broker.request``. nameko cannot be
   installed here; its RPC p50 is quoted from issue 4 (1,660 us, measured on
   this machine) for the ``<= 0.5x`` target.

Each figure is the median of ``--repeats`` rounds. The machine is shared and
noisy: compare the ratios printed beside each figure, not the absolute values.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aio_pika
import aio_pika.abc
import msgspec
from faststream.rabbit import Channel, RabbitBroker, RabbitQueue

from seawall import Command, Document, Service, System
from seawall._messages.envelope import Message
from seawall._messages.ids import uuid7
from seawall._transport import ChannelSpec
from seawall.transports.rabbitmq import RabbitMQTransport

from .faststream_payload import ReadingModel
from .workloads import PAYLOAD, Reading

URL = os.environ.get("SEAWALL_BENCH_RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672/")
NAMEKO_RPC_P50_US = 1660.0  # issue 4, measured on this machine; nameko is not installable here
BODY = msgspec.json.encode(PAYLOAD)
decode_reading = msgspec.json.Decoder(Reading).decode
QUORUM = {"x-queue-type": "quorum"}
PERSISTENT = aio_pika.DeliveryMode.PERSISTENT


class Ask(Command, frozen=True):
    """The request: the same fields as the published reading."""

    type_name = "bench.Ask"
    sensor: str
    seq: int
    value: float
    unit: str
    site: str


class Answer(Document, frozen=True):
    type_name = "bench.Answer"
    seq: int


ASK = Ask(**msgspec.structs.asdict(PAYLOAD))
ASK_BODY = msgspec.json.encode(ASK)
decode_ask = msgspec.json.Decoder(Ask).decode
decode_answer = msgspec.json.Decoder(Answer).decode


class Counter:
    """Counts handled messages; ``done`` is set at ``target``."""

    def __init__(self, target: int) -> None:
        self.target = target
        self.count = 0
        self.done = asyncio.Event()

    def hit(self) -> None:
        self.count += 1
        if self.count >= self.target:
            self.done.set()


async def windowed(count: int, window: int, publish: Callable[[], Awaitable[Any]]) -> None:
    """``count`` publishes, ``window`` of them in flight together."""
    for start in range(0, count, window):
        await asyncio.gather(*(publish() for _ in range(min(window, count - start))))


async def rate(count: int, window: int, publish: Callable[[], Awaitable[Any]], c: Counter) -> float:
    started = time.perf_counter()
    await windowed(count, window, publish)
    async with asyncio.timeout(120):
        await c.done.wait()
    return count / (time.perf_counter() - started)


# -- pub/sub ----------------------------------------------------------------------------
async def raw_pubsub(conn: aio_pika.abc.AbstractConnection, count: int, window: int) -> float:
    name = f"bench.raw.{uuid.uuid4().hex[:8]}"
    pub = await conn.channel(publisher_confirms=True)
    sub = await conn.channel()
    await sub.set_qos(prefetch_count=window)
    queue = await sub.declare_queue(name, durable=True, arguments=QUORUM)
    counter = Counter(count)

    async def handle(msg: aio_pika.abc.AbstractIncomingMessage) -> None:
        decode_reading(msg.body)
        await msg.ack()
        counter.hit()

    def publish() -> Awaitable[Any]:
        message = aio_pika.Message(BODY, content_type="application/json", delivery_mode=PERSISTENT)
        return pub.default_exchange.publish(message, name)

    tag = await queue.consume(handle)
    try:
        return await rate(count, window, publish, counter)
    finally:
        await queue.cancel(tag)
        await queue.delete(if_unused=False, if_empty=False)
        await pub.close()
        await sub.close()


async def transport_pubsub(transport: RabbitMQTransport, count: int, window: int) -> float:
    channel = f"bench.transport.{uuid.uuid4().hex[:8]}"
    sub = await transport.subscribe(channel, group="bench", prefetch=window)
    counter = Counter(count)

    async def consume() -> None:
        async for delivery in sub:
            decode_reading(delivery.message.data)
            await sub.ack(delivery)
            counter.hit()

    def publish() -> Awaitable[None]:
        message = Message(id=uuid7(), type=Reading.type_name, source="bench", data=BODY)
        return transport.publish(channel, message)

    async with asyncio.TaskGroup() as tasks:
        reader = tasks.create_task(consume())
        try:
            return await rate(count, window, publish, counter)
        finally:
            await sub.close()
            reader.cancel()


async def runtime_pubsub(url: str, count: int, window: int) -> float:
    name = f"benchrt{uuid.uuid4().hex[:8]}"
    svc = Service(name, concurrency=window)
    counter = Counter(count)

    @svc.command
    async def reading(event: Reading) -> None:
        counter.hit()

    async with System(svc, transport=url) as system:
        ctx = system.context()
        result = await rate(count, window, lambda: ctx.publish(PAYLOAD, channel=name), counter)
        MADE.update(made(system))
    return result


async def faststream_pubsub(url: str, count: int, window: int) -> float:
    name = f"bench.faststream.{uuid.uuid4().hex[:8]}"
    broker = RabbitBroker(url, logger=None)
    counter = Counter(count)
    queue = RabbitQueue(name, durable=True, arguments=QUORUM)

    @broker.subscriber(queue, channel=Channel(prefetch_count=window))
    async def reading(message: ReadingModel) -> None:
        counter.hit()

    async with broker:
        await broker.start()

        def publish() -> Awaitable[Any]:
            return broker.publish(PAYLOAD_DICT, queue=name, persist=True)

        result = await rate(count, window, publish, counter)
    await delete_queues(url, name)
    return result


PAYLOAD_DICT = msgspec.structs.asdict(PAYLOAD)


# -- request/reply -------------------------------------------------------------------------
Call = Callable[[], Awaitable[Any]]


@contextlib.asynccontextmanager
async def raw_rpc(conn: aio_pika.abc.AbstractConnection) -> AsyncIterator[Call]:
    name = f"bench.rpc.{uuid.uuid4().hex[:8]}"
    channel = await conn.channel(publisher_confirms=True)
    requests = await channel.declare_queue(name, durable=True, arguments=QUORUM)
    replies = await channel.declare_queue(exclusive=True)
    waiting: dict[str, asyncio.Future[bytes]] = {}

    async def respond(msg: aio_pika.abc.AbstractIncomingMessage) -> None:
        ask = decode_ask(msg.body)
        answer = aio_pika.Message(
            msgspec.json.encode(Answer(seq=ask.seq)),
            correlation_id=msg.correlation_id,
            content_type="application/json",
        )
        assert msg.reply_to is not None
        await channel.default_exchange.publish(answer, msg.reply_to)
        await msg.ack()

    async def answered(msg: aio_pika.abc.AbstractIncomingMessage) -> None:
        future = waiting.pop(msg.correlation_id or "", None)
        if future is not None:
            future.set_result(msg.body)

    async def call() -> None:
        correlation = uuid.uuid4().hex
        future = waiting[correlation] = asyncio.get_running_loop().create_future()
        request = aio_pika.Message(
            ASK_BODY,
            correlation_id=correlation,
            reply_to=replies.name,
            content_type="application/json",
            delivery_mode=PERSISTENT,
        )
        await channel.default_exchange.publish(request, name)
        decode_answer(await future)

    tag = await requests.consume(respond)
    await replies.consume(answered, no_ack=True)
    try:
        yield call
    finally:
        await requests.cancel(tag)
        await requests.delete(if_unused=False, if_empty=False)
        await channel.close()


@contextlib.asynccontextmanager
async def seawall_rpc(url: str) -> AsyncIterator[Call]:
    name = f"benchrpc{uuid.uuid4().hex[:8]}"
    svc = Service(name)

    @svc.command
    async def ask(request: Ask) -> Answer:
        return Answer(seq=request.seq)

    async with System(svc, transport=url) as server, System(transport=url) as caller:
        ctx = caller.context()
        yield lambda: ctx.request(name, ASK, returns=Answer, timeout=10.0)
        MADE.update(made(server))


@contextlib.asynccontextmanager
async def transport_rpc(url: str) -> AsyncIterator[Call]:
    name = f"bench.trpc.{uuid.uuid4().hex[:8]}"
    inbox = f"_inbox.bench{uuid.uuid4().hex[:8]}"
    caller, server = [await RabbitMQTransport.connect(url) for _ in range(2)]
    await caller.declare(ChannelSpec(name=inbox, ephemeral=True))
    replies = await caller.subscribe(inbox, group=inbox, prefetch=1024)
    requests = await server.subscribe(name, group="bench", prefetch=64)
    waiting: dict[str, asyncio.Future[bytes]] = {}

    async def respond() -> None:
        async for delivery in requests:
            request = delivery.message
            answer = Answer(seq=decode_ask(request.data).seq)
            reply = Message(
                id=uuid7(),
                type=Answer.type_name,
                source="bench",
                data=msgspec.json.encode(answer),
                causationid=request.id,
            )
            assert request.replyto is not None
            await server.publish(request.replyto, reply)
            await requests.ack(delivery)

    async def answered() -> None:
        async for delivery in replies:
            future = waiting.pop(delivery.message.causationid or "", None)
            if future is not None:
                future.set_result(delivery.message.data)
            await replies.ack(delivery)

    async def call() -> None:
        request = Message(
            id=uuid7(), type=Ask.type_name, source="bench", data=ASK_BODY, replyto=inbox
        )
        future = waiting[request.id] = asyncio.get_running_loop().create_future()
        await caller.publish(name, request)
        decode_answer(await future)

    try:
        async with asyncio.TaskGroup() as tasks:
            readers = [tasks.create_task(respond()), tasks.create_task(answered())]
            yield call
            for reader in readers:
                reader.cancel()
    finally:
        MADE.update(caller.topology.made | server.topology.made)
        await caller.close()
        await server.close()


MADE: set[tuple[str, str]] = set()
"""Queues and exchanges the seawall rounds declared, deleted at the end."""


def made(system: System) -> set[tuple[str, str]]:
    transport = system.transport
    assert isinstance(transport, RabbitMQTransport)
    return transport.topology.made


@contextlib.asynccontextmanager
async def faststream_rpc(url: str) -> AsyncIterator[Call]:
    name = f"bench.fsrpc.{uuid.uuid4().hex[:8]}"
    broker = RabbitBroker(url, logger=None)

    @broker.subscriber(RabbitQueue(name, durable=True, arguments=QUORUM))
    async def ask(message: ReadingModel) -> dict[str, int]:
        return {"seq": message.seq}

    async def call() -> None:
        reply = await broker.request(PAYLOAD_DICT, queue=name, persist=True, timeout=10.0)
        decode_answer(reply.body)

    async with broker:
        await broker.start()
        yield call
    await delete_queues(url, name)


async def paired_p50(rounds: int, calls: dict[str, Call]) -> dict[str, float]:
    """Median round trip (us) of each contestant, their calls taken in turn.

    Taking one call of each in turn, instead of all of one then all of the next,
    spreads the shared machine's slow spells (fsync stalls of the other tenants)
    evenly over the contestants. The order rotates every turn, so each follows
    each other as often: work a call leaves behind (FastStream's consumes and
    cancels a reply-to consumer per request) does not always land in the same
    contestant's next call.
    """
    times: dict[str, list[float]] = {name: [] for name in calls}
    order = list(calls)
    for turn in range(rounds + 20):
        shift = turn % len(order)
        for name in order[shift:] + order[:shift]:
            started = time.perf_counter()
            await calls[name]()
            if turn >= 20:  # the first ones warm up
                times[name].append(time.perf_counter() - started)
    return {name: statistics.median(each) * 1e6 for name, each in times.items()}


async def rpc_round(conn: aio_pika.abc.AbstractConnection, rounds: int) -> dict[str, float]:
    async with (
        raw_rpc(conn) as raw,
        transport_rpc(URL) as transport,
        seawall_rpc(URL) as ours,
        faststream_rpc(URL) as fs,
    ):
        calls = {"raw": raw, "transport": transport, "seawall": ours, "fs": fs}
        return await paired_p50(rounds, calls)


async def delete_queues(url: str, *names: str) -> None:
    connection = await aio_pika.connect(url)
    async with connection:
        channel = await connection.channel()
        for name in names:
            with contextlib.suppress(aio_pika.exceptions.AMQPError):
                await channel.queue_delete(name)


# -- the run ----------------------------------------------------------------------------------
async def run(args: argparse.Namespace) -> None:
    count, window, rounds = args.count, args.window, args.rounds
    conn = await aio_pika.connect(URL)
    transport = await RabbitMQTransport.connect(URL)
    pubsub: dict[str, list[float]] = {"raw": [], "transport": [], "runtime": [], "fs": []}
    rpc: dict[str, list[float]] = {"raw": [], "transport": [], "seawall": [], "fs": []}
    try:
        for _ in range(args.repeats):  # interleaved, so drifts of the shared machine hit all
            pubsub["raw"].append(await raw_pubsub(conn, count, window))
            pubsub["transport"].append(await transport_pubsub(transport, count, window))
            pubsub["runtime"].append(await runtime_pubsub(URL, count, window))
            pubsub["fs"].append(await faststream_pubsub(URL, count // 4, window))
            for key, value in (await rpc_round(conn, rounds)).items():
                rpc[key].append(value)
    finally:
        await cleanup(transport)
        await transport.close()
        await conn.close()
    report(args, {k: statistics.median(v) for k, v in pubsub.items()}, rpc)


async def cleanup(transport: RabbitMQTransport) -> None:
    """Delete the channels the transport-level and runtime rounds declared."""
    connection = await aio_pika.connect(URL)
    async with connection:
        for kind, name in sorted(transport.topology.made | MADE, reverse=True):
            channel = await connection.channel()
            with contextlib.suppress(aio_pika.exceptions.AMQPError):
                if kind == "queue":
                    await channel.queue_delete(name)
                else:
                    await channel.exchange_delete(name)
            with contextlib.suppress(aio_pika.exceptions.AMQPError):
                await channel.close()


def report(args: argparse.Namespace, pubsub: dict[str, float], rpc: dict[str, list[float]]) -> None:
    raw, fs = pubsub["raw"], pubsub["fs"]
    print(
        f"RabbitMQ, {len(BODY)}-byte JSON payload decoded into a typed message, window "
        f"{args.window}, quorum queues, persistent, confirmed; median of {args.repeats} rounds"
    )
    print(f"pub/sub end to end ({args.count} messages; FastStream {args.count // 4}):")
    print(f"  raw aio-pika          {raw:>8.0f} msgs/s")
    for key, label in (("transport", "seawall transport"), ("runtime", "seawall runtime")):
        ours = pubsub[key]
        print(
            f"  {label:<21} {ours:>8.0f} msgs/s  {ours / raw:.2f}x raw (target >= 0.7x)  "
            f"{ours / fs:.1f}x FastStream (target >= 5x)"
        )
    print(f"  FastStream            {fs:>8.0f} msgs/s  {fs / raw:.2f}x raw")
    medians = {k: statistics.median(v) for k, v in rpc.items()}
    base = medians["raw"]
    print(f"request/reply p50 ({args.rounds} sequential round trips per round):")
    print(f"  raw aio-pika RPC      {base:>8.0f} us")
    transport = medians["transport"]
    print(f"  seawall transport     {transport:>8.0f} us  {transport / base:.2f}x raw")
    ours = medians["seawall"]
    print(
        f"  seawall               {ours:>8.0f} us  {ours / base:.2f}x raw (target <= 1.3x)  "
        f"{ours / NAMEKO_RPC_P50_US:.2f}x nameko (target <= 0.5x)"
    )
    print(f"  FastStream            {medians['fs']:>8.0f} us  {medians['fs'] / base:.2f}x raw")
    print(f"  nameko (issue 4)      {NAMEKO_RPC_P50_US:>8.0f} us  quoted, not measured here")
    rounds = ", ".join(f"{r:.0f}/{s:.0f}" for r, s in zip(rpc["raw"], rpc["seawall"], strict=True))
    print(f"  per round raw/seawall p50 (us): {rounds}")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.rabbitmq_compare")
    parser.add_argument("--count", type=int, default=4000, help="messages per pub/sub round")
    parser.add_argument("--window", type=int, default=64, help="publishes in flight, prefetch")
    parser.add_argument("--rounds", type=int, default=300, help="round trips per p50")
    parser.add_argument("--repeats", type=int, default=3, help="rounds; medians are printed")
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
