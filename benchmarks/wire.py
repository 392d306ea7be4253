"""``python -m benchmarks.wire``: the broker server and ``seawall://`` transport, measured.

Three processes, as in production: a broker server backed by the memory
transport, a consumer (or a responder), and this process as producer.

1. publish -> deliver -> ack: the producer publishes in pipelined windows
   (``--window`` publishes awaited together with ``gather``), the consumer
   acks every delivery; throughput is messages over the time from the first
   publish to the consumer's last ack.
2. request/reply round trip: publish a request, a responder process answers
   on the reply channel, wait for the reply; p50 and p99, and the CPU each
   process spent per round trip (``--latency-only`` measures only this). On
   three requests channels, measured in rotation with the NATS anchor: requests
   stored (the default; fsynced on a durable server), stored without fsync
   (``sync_requests=False``, durable server only), and direct
   (``requests="direct"``: handed from the broker's memory, never written).
3. The anchors, against the local NATS server (``--nats``) through nats-py,
   each with the other side in a process of its own: for 1, JetStream with
   file storage, the producer publishing with async acks in the same windows
   and a durable pull consumer acking every message; for 2, NATS core
   request/reply. Skipped with a message when NATS or nats-py is missing.

Payloads are 100 bytes. The machine is shared: compare ratios from one run.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

from seawall import ChannelSpec, Message, uuid7
from seawall._broker.engine import BrokerLimits
from seawall._server.heap import settle_for_serving
from seawall._server.server import BrokerServer
from seawall._transport import Transport
from seawall.transports.embedded import EmbeddedTransport
from seawall.transports.memory import MemoryTransport
from seawall.transports.seawall import SeawallTransport

PAYLOAD = b"x" * 100
UVLOOP = "--uvloop" in sys.argv
"""Run every process on uvloop's event loop (``pip install uvloop``), for comparison."""
CHANNEL = "bench.work"
REQUESTS = "bench.requests"
REPLIES = "bench.replies"


def message(*, replyto: str | None = None) -> Message:
    """A 100-byte message; with ``replyto`` a request, with a deadline as the runtime's."""
    deadline = None if replyto is None else datetime.now(UTC) + timedelta(seconds=10)
    return Message(
        id=uuid7(),
        type="bench.Work",
        source="bench",
        data=PAYLOAD,
        replyto=replyto,
        deadline=deadline,
    )


# -- the other processes ------------------------------------------------------------------


async def serve(data: str | None) -> None:
    """Run the broker server until stdin closes; print its port first.

    With ``data`` the server is the durable embedded broker there (sync=batch,
    as ``seawall broker`` runs by default); else the memory transport.
    """
    backing: Transport = MemoryTransport(serialize=False, publish_timeout=None)
    if data is not None:
        embedded = EmbeddedTransport(data, limits=BrokerLimits(publish_timeout=None))
        await embedded.broker()  # opened and recovered, then the heap settled: `seawall broker`
        settle_for_serving()
        backing = embedded
    async with BrokerServer(backing, host="127.0.0.1") as server:
        print(server.port, flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    await backing.close()


async def js_consume(url: str, stream: str, count: int, prefetch: int) -> None:
    """The JetStream anchor's consumer: a durable pull consumer acking each message."""
    import nats

    client = await nats.connect(url)
    sub = await client.jetstream().pull_subscribe(f"{stream}.work", "bench", stream=stream)
    print("ready", flush=True)
    cpu = time.process_time()
    done = 0
    while done < count:
        try:
            batch = await sub.fetch(prefetch, timeout=1.0)
        except TimeoutError:
            continue
        for msg in batch:
            await msg.ack()
        done += len(batch)
    print(time.time(), time.process_time() - cpu, flush=True)
    await client.close()


async def consume(url: str, count: int, prefetch: int) -> None:
    """Ack ``count`` deliveries; print the wall-clock time of the last ack and the CPU used."""
    transport = await SeawallTransport.connect(url)
    sub = await transport.subscribe(CHANNEL, group="bench", prefetch=prefetch)
    print("ready", flush=True)
    cpu = time.process_time()
    done = 0
    async for delivery in sub:
        await sub.ack(delivery)
        done += 1
        if done == count:
            break
    print(time.time(), time.process_time() - cpu, flush=True)
    await transport.close()


async def respond(url: str, channel: str) -> None:
    """Answer every request on ``channel`` on its reply channel until stdin closes."""
    transport = await SeawallTransport.connect(url)
    sub = await transport.subscribe(channel, group="responder", prefetch=64)
    print("ready", flush=True)

    async def answer() -> None:
        async for delivery in sub:
            request = delivery.message
            assert request.replyto is not None
            await transport.publish(request.replyto, message())
            await sub.ack(delivery)

    task = asyncio.create_task(answer())
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    task.cancel()
    await transport.close()


async def nats_respond(url: str) -> None:
    """Answer NATS core requests until stdin closes."""
    import nats

    client = await nats.connect(url)

    async def answer(msg: object) -> None:
        await msg.respond(PAYLOAD)  # type: ignore[attr-defined]

    await client.subscribe(REQUESTS, cb=answer)
    await client.flush()
    print("ready", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    await client.close()


# -- the measurements -----------------------------------------------------------------------


def spawn(*args: str) -> subprocess.Popen[str]:
    loop = ["--uvloop"] if UVLOOP else []
    return subprocess.Popen(
        [sys.executable, "-m", "benchmarks.wire", *loop, *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )


def line(process: subprocess.Popen[str]) -> str:
    assert process.stdout is not None
    text = process.stdout.readline().strip()
    if not text:
        raise RuntimeError(f"benchmark process {process.args} ended without answering")
    return text


def stop(process: subprocess.Popen[str]) -> None:
    assert process.stdin is not None
    process.stdin.close()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


class Run(NamedTuple):
    """One throughput run: messages per second and CPU microseconds per message."""

    rate: float
    producer: float
    server: float
    consumer: float


async def throughput(url: str, server: int, count: int, window: int, prefetch: int) -> Run:
    consumer = spawn("--consume", url, str(count), str(prefetch))
    try:
        await asyncio.to_thread(line, consumer)  # subscribed
        producer = await SeawallTransport.connect(url)
        messages = [message() for _ in range(count)]  # built ahead: the transport is measured
        server_cpu, cpu, started = cpu_seconds(server), time.process_time(), time.time()
        for first in range(0, count, window):
            batch = messages[first : first + window]
            await asyncio.gather(*(producer.publish(CHANNEL, m) for m in batch))
        cpu = time.process_time() - cpu
        finished, consumer_cpu = map(float, (await asyncio.to_thread(line, consumer)).split())
        server_cpu = cpu_seconds(server) - server_cpu
        await producer.close()
    finally:
        stop(consumer)
    per = 1e6 / count
    return Run(count / (finished - started), cpu * per, server_cpu * per, consumer_cpu * per)


async def nats_client(url: str) -> Any:
    """A nats-py client of the anchor server, or why there is none (a "skipped: …" line)."""
    try:
        import nats
    except ImportError:
        return "skipped: nats-py is not installed (.venv/bin/pip install nats-py)"
    try:
        return await nats.connect(url, connect_timeout=2, max_reconnect_attempts=0)
    except Exception as exc:
        return f"skipped: NATS at {url} is unreachable ({exc!r})"


async def jetstream_throughput(url: str, count: int, window: int, prefetch: int) -> Run | str:
    """The anchor of figure 1: the same producer/consumer pair over JetStream."""
    client = await nats_client(url)
    if isinstance(client, str):
        return client
    js = client.jetstream()
    stream = f"BENCH_WIRE_{uuid7().replace('-', '')[-12:]}"
    await js.add_stream(name=stream, subjects=[f"{stream}.work"], storage="file")
    consumer = spawn("--js-consume", url, stream, str(count), str(prefetch))
    try:
        await asyncio.to_thread(line, consumer)
        cpu, started = time.process_time(), time.time()
        for first in range(0, count, window):
            for _ in range(min(window, count - first)):
                await js.publish_async(f"{stream}.work", PAYLOAD)
            await js.publish_async_completed()
        cpu = time.process_time() - cpu
        finished, consumer_cpu = map(float, (await asyncio.to_thread(line, consumer)).split())
    finally:
        stop(consumer)
        await js.delete_stream(stream)
        await client.close()
    per = 1e6 / count
    return Run(count / (finished - started), cpu * per, 0.0, consumer_cpu * per)


def cpu_seconds(pid: int) -> float:
    """CPU time used so far by process ``pid`` (Linux ``/proc``; 0 elsewhere)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def round_trips(rounds: int, ask: Callable[[], Awaitable[None]]) -> list[float]:
    """Seconds per round trip of ``ask``, after a warm-up of a tenth as many."""
    for _ in range(max(1, rounds // 10)):
        await ask()
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        await ask()
        times.append(time.perf_counter() - started)
    return times


REQUEST_CHANNELS = {
    "synced": ChannelSpec(name=f"{REQUESTS}.synced"),
    "unsynced": ChannelSpec(name=f"{REQUESTS}.unsynced", sync_requests=False),
    "direct": ChannelSpec(name=f"{REQUESTS}.direct", requests="direct"),
}
"""The requests channels measured: stored (fsynced on a durable server), stored
without fsync of requests, and direct (never written)."""


async def seawall_request_reply(url: str, server: int, rounds: int, kind: str) -> list[float]:
    """Round trip times on the ``kind`` requests channel (:data:`REQUEST_CHANNELS`);
    prints the CPU each process spent per round trip."""
    spec = REQUEST_CHANNELS[kind]
    channel = spec.name
    setup = await SeawallTransport.connect(url)
    await setup.declare(spec)
    await setup.close()
    responder = spawn("--respond", url, channel)
    try:
        await asyncio.to_thread(line, responder)
        cpu = time.process_time(), cpu_seconds(server), cpu_seconds(responder.pid)
        transport = await SeawallTransport.connect(url)
        inbox = f"{REPLIES}.{uuid7()}"
        # a reply inbox, as the runtime declares it: nothing to keep on disk
        await transport.declare(ChannelSpec(name=inbox, ephemeral=True))
        sub = await transport.subscribe(inbox, group="me", prefetch=1)
        replies = aiter(sub)

        async def ask() -> None:
            await transport.publish(channel, message(replyto=inbox))
            reply = await anext(replies)
            await sub.ack(reply)

        times = await round_trips(rounds, ask)
        spent = time.process_time(), cpu_seconds(server), cpu_seconds(responder.pid)
        await transport.close()
        per = 1e6 / (rounds + max(1, rounds // 10))
        parts = zip(("requester", "server", "responder"), spent, cpu, strict=True)
        shares = ", ".join(f"{name} {(after - before) * per:.0f}" for name, after, before in parts)
        print(f"  CPU per round trip, {kind} (us; /proc, 10 ms ticks): {shares}")
    finally:
        stop(responder)
    return times


async def nats_request_reply(url: str, rounds: int) -> list[float] | str:
    client = await nats_client(url)
    if isinstance(client, str):
        return client
    responder = spawn("--nats-respond", url)
    try:
        await asyncio.to_thread(line, responder)

        async def ask() -> None:
            await client.request(REQUESTS, PAYLOAD, timeout=2)

        return await round_trips(rounds, ask)
    finally:
        await client.close()
        stop(responder)


def report(runs: list[Run], anchor: list[Run] | str) -> None:
    rate = statistics.median(run.rate for run in runs)
    rates = ", ".join(f"{run.rate:,.0f}" for run in runs)
    print(f"publish -> deliver -> ack over the server: {rate:,.0f} msgs/s (median of {rates}; ")
    print(f"  target >= 50,000: {rate / 50_000:.2f}x)")
    cpu = [statistics.median(getattr(run, part) for run in runs) for part in Run._fields[1:]]
    parts = ", ".join(f"{name} {us:.1f}" for name, us in zip(Run._fields[1:], cpu, strict=True))
    print(f"  CPU per message (us, median): {parts}; total {sum(cpu):.1f}")
    if isinstance(anchor, str):
        print(f"JetStream anchor {anchor}")
        return
    js_rate = statistics.median(run.rate for run in anchor)
    js_rates = ", ".join(f"{run.rate:,.0f}" for run in anchor)
    print(f"JetStream (file storage, async publish acks, pull + ack; nats-py): {js_rate:,.0f} ")
    print(f"  msgs/s (median of {js_rates})")
    print(f"ratio seawall / JetStream: {rate / js_rate:.2f}x (target >= 1.0x)")


def percentiles(times: list[float]) -> tuple[float, float]:
    """p50 and p99 in microseconds."""
    ordered = sorted(times)
    return statistics.median(ordered) * 1e6, ordered[int(len(ordered) * 0.99)] * 1e6


async def throughputs(url: str, server: int, args: argparse.Namespace) -> None:
    """Figure 1 and its JetStream anchor, three runs each."""
    runs = [await throughput(url, server, args.count, args.window, args.prefetch) for _ in range(3)]
    anchor: list[Run] | str = []
    for _ in range(3):
        run = await jetstream_throughput(args.nats, args.count, args.window, args.prefetch)
        if isinstance(run, str):
            anchor = run
            break
        anchor.append(run)
    report(runs, anchor)


async def main(args: argparse.Namespace) -> None:
    server = spawn("--serve", *(["--data", args.data] if args.data else []))
    print(f"broker server backed by {'embedded:' + args.data if args.data else 'memory'}")
    try:
        url = f"seawall://127.0.0.1:{await asyncio.to_thread(line, server)}"
        if not args.latency_only:
            await throughputs(url, server.pid, args)
        kinds = ["synced", "unsynced", "direct"] if args.data else ["synced", "direct"]
        figures = await request_rounds(url, server.pid, args, kinds)
    finally:
        stop(server)
    report_requests(figures, args, kinds)


async def request_rounds(
    url: str, server: int, args: argparse.Namespace, kinds: list[str]
) -> dict[str, list[float] | str]:
    """Three rounds of every requests channel and the NATS anchor, order rotating."""
    contestants = [*kinds, "nats"]
    figures: dict[str, list[float] | str] = {name: [] for name in contestants}
    per_round = args.rounds // 3
    for round_ in range(3):
        for name in contestants[round_:] + contestants[:round_]:
            done = figures[name]
            if isinstance(done, str):
                continue
            if name == "nats":
                times = await nats_request_reply(args.nats, per_round)
            else:
                times = await seawall_request_reply(url, server, per_round, name)
            figures[name] = times if isinstance(times, str) else done + times
    return figures


def report_requests(
    figures: dict[str, list[float] | str], args: argparse.Namespace, kinds: list[str]
) -> None:
    loop = "uvloop" if UVLOOP else "asyncio"
    what = {
        "synced": "requests fsynced (sync_requests=True)" if args.data else "requests stored",
        "unsynced": "requests committed without fsync, sync_requests=False",
        "direct": "requests direct, requests='direct': never written",
    }
    p50s: dict[str, float] = {}
    for kind in kinds:
        times = figures[kind]
        assert not isinstance(times, str)
        p50s[kind], p99 = percentiles(times)
        print(
            f"request/reply over the server ({loop}, {what[kind]}): p50 {p50s[kind]:.0f} us, "
            f"p99 {p99:.0f} us"
        )
    anchor = figures["nats"]
    if isinstance(anchor, str):
        print(f"NATS core request/reply anchor {anchor}")
        return
    n50, n99 = percentiles(anchor)
    print(f"NATS core request/reply (nats-py): p50 {n50:.0f} us, p99 {n99:.0f} us")
    for kind in kinds:
        print(f"ratio seawall ({kind}) / NATS at p50: {p50s[kind] / n50:.2f}x (target <= 2.0x)")


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.wire", description=__doc__)
    parser.add_argument("--count", type=int, default=100_000, help="messages per throughput run")
    parser.add_argument("--window", type=int, default=1000, help="publishes awaited together")
    parser.add_argument("--prefetch", type=int, default=1000, help="the consumer's prefetch")
    parser.add_argument("--rounds", type=int, default=2000, help="request/reply round trips")
    parser.add_argument("--nats", default="nats://127.0.0.1:4222", help="NATS for the anchor")
    parser.add_argument(
        "--latency-only", action="store_true", help="skip figure 1: request/reply only"
    )
    parser.add_argument("--uvloop", action="store_true", help="use uvloop in every process")
    parser.add_argument("--data", help="serve the durable embedded broker in this directory")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--consume", nargs=3, metavar=("URL", "COUNT", "PREFETCH"))
    parser.add_argument("--js-consume", nargs=4, help=argparse.SUPPRESS)
    parser.add_argument("--respond", nargs=2, help=argparse.SUPPRESS)
    parser.add_argument("--nats-respond", metavar="URL", help=argparse.SUPPRESS)
    return parser.parse_args()


if __name__ == "__main__":
    options = parse()
    if options.uvloop:
        import uvloop  # type: ignore[import-not-found]

        uvloop.install()
    if options.serve:
        asyncio.run(serve(options.data))
    elif options.consume:
        url, count, prefetch = options.consume
        asyncio.run(consume(url, int(count), int(prefetch)))
    elif options.js_consume:
        url, stream, count, prefetch = options.js_consume
        asyncio.run(js_consume(url, stream, int(count), int(prefetch)))
    elif options.respond:
        asyncio.run(respond(*options.respond))
    elif options.nats_respond:
        asyncio.run(nats_respond(options.nats_respond))
    else:
        asyncio.run(main(options))
