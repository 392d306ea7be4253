"""``python -m benchmarks.jetstream``: the NATS JetStream transport beside raw nats-py.

Two figures, each measured for a raw nats-py client and for seawall's
:class:`~seawall.transports.nats.NatsTransport` in the same run, on the same
server, with the same ~100-byte JSON payload decoded into a typed struct:

* **publish**: one acknowledged publish after another (``js.publish`` vs
  ``transport.publish``), messages per second;
* **durable consume + ack**: a stream filled beforehand, read by a durable
  pull consumer that decodes and acks each message (``fetch(64)`` in a loop
  vs iterating a subscription with ``prefetch=64``), messages per second.

Both figures are medians of ``SEAWALL_BENCH_NATS_ROUNDS`` rounds (3), which alternate
which side goes first.

The server is ``SEAWALL_BENCH_NATS_URL`` (default ``nats://127.0.0.1:4222``);
every stream made here is deleted afterwards. The machine is shared, so
compare the ratios, not the absolute numbers.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import time
import uuid

import msgspec
import nats

from seawall._messages.envelope import Message, to_headers
from seawall._messages.ids import uuid7
from seawall._transport import ChannelSpec
from seawall.transports.nats import NatsTransport

from .workloads import PAYLOAD, Reading

COUNT = int(os.environ.get("SEAWALL_BENCH_NATS_COUNT", "20000"))
URL = os.environ.get("SEAWALL_BENCH_NATS_URL", "nats://127.0.0.1:4222")
BATCH = 64
ROUNDS = int(os.environ.get("SEAWALL_BENCH_NATS_ROUNDS", "3"))
BODY = msgspec.json.encode(PAYLOAD)
decode = msgspec.json.Decoder(Reading).decode


def envelope() -> Message:
    return Message(id=uuid7(), type=Reading.type_name, source="bench", data=BODY)


async def raw_publish(js: nats.js.JetStreamContext, subject: str, count: int) -> float:
    started = time.perf_counter()
    for _ in range(count):
        await js.publish(subject, BODY)
    return count / (time.perf_counter() - started)


async def raw_consume(
    js: nats.js.JetStreamContext, subject: str, count: int, durable: str = "raw"
) -> float:
    sub = await js.pull_subscribe(subject, durable)
    done = 0
    started = time.perf_counter()
    while done < count:
        for msg in await sub.fetch(BATCH, timeout=5.0):
            decode(msg.data)
            await msg.ack()
            done += 1
    return count / (time.perf_counter() - started)


async def seawall_publish(transport: NatsTransport, channel: str, count: int) -> float:
    messages = [envelope() for _ in range(count)]
    started = time.perf_counter()
    for message in messages:
        await transport.publish(channel, message)
    return count / (time.perf_counter() - started)


async def seawall_consume(
    transport: NatsTransport, channel: str, count: int, group: str = "bench"
) -> float:
    sub = await transport.subscribe(channel, group=group, prefetch=BATCH)
    done = 0
    started = time.perf_counter()
    async for delivery in sub:
        decode(delivery.message.data)
        await sub.ack(delivery)
        done += 1
        if done == count:
            break
    rate = count / (time.perf_counter() - started)
    await sub.close()
    return rate


async def fill(js: nats.js.JetStreamContext, subject: str, headers: dict[str, str] | None) -> None:
    """Put COUNT messages into the stream quickly (async publishes, acked in the end)."""
    for _ in range(COUNT):
        await js.publish_async(subject, BODY, headers=headers)
    await js.publish_async_completed()


async def main() -> None:
    client = await nats.connect(URL)
    js = client.jetstream()
    transport = await NatsTransport.connect(URL)
    tag = uuid.uuid4().hex[:8]
    raw_stream, raw_subject = f"BENCH_RAW_{tag}", f"bench.raw.{tag}"
    channel = f"bench.nats.{tag}"
    await js.add_stream(name=raw_stream, subjects=[raw_subject])
    await transport.declare(ChannelSpec(name=channel, max_messages=10 * COUNT))
    stream = transport._streams[channel]
    rates: dict[str, list[float]] = {
        "raw publish": [],
        "our publish": [],
        "raw consume": [],
        "our consume": [],
    }
    headers = to_headers(envelope())
    try:
        # Rounds alternate which side goes first; the figures are medians of the rounds.
        for round_ in range(ROUNDS):
            sides = [("raw", raw_subject), ("our", channel)]
            if round_ % 2:
                sides.reverse()
            for side, _ in sides:
                rates[f"{side} publish"].append(
                    await raw_publish(js, raw_subject, COUNT // 4)
                    if side == "raw"
                    else await seawall_publish(transport, channel, COUNT // 4)
                )
            await js.purge_stream(raw_stream)
            await js.purge_stream(stream.name)
            await fill(js, raw_subject, None)
            await fill(js, stream.subject(0), headers)
            for side, _ in sides:
                rates[f"{side} consume"].append(
                    await raw_consume(js, raw_subject, COUNT, f"raw{round_}")
                    if side == "raw"
                    else await seawall_consume(transport, channel, COUNT, f"bench{round_}")
                )
            await js.purge_stream(raw_stream)
            await js.purge_stream(stream.name)
    finally:
        await js.delete_stream(raw_stream)
        await js.delete_stream(stream.name)
        await transport.close()
        await client.close()
    print(
        f"NATS JetStream, {len(BODY)}-byte JSON payload, {COUNT} messages, medians of "
        f"{ROUNDS} rounds"
    )
    med = statistics.median
    publish = (med(rates["raw publish"]), med(rates["our publish"]))
    consume = (med(rates["raw consume"]), med(rates["our consume"]))
    for label, (raw, ours) in (("publish (acked)", publish), ("consume + ack", consume)):
        print(f"  {label:<16} raw nats-py {raw:>8.0f}/s  seawall {ours:>8.0f}/s  {ours / raw:.2f}x")


if __name__ == "__main__":
    asyncio.run(main())
