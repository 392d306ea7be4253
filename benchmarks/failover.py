"""``python -m benchmarks.failover``: how long delivery stops when an owner or a node dies.

Two scenarios, each repeated (``--rounds``, 5 by default) and reported as medians:

* **owner killed** (``seawall://``, NATS, Redis, RabbitMQ): a group of two members on a
  channel of 4 partitions, one in this process (the survivor), one a child process that
  owns half the partitions and acks each delivery 50 ms after it came (so it dies with
  some unsettled). A publisher sends 200 messages a second over 8 keys. The child is
  SIGKILLed; figures are the seconds from the kill until the survivor delivers the first
  message of a partition the child owned (*resumed*), and until it gets the first of
  the child's unsettled messages again (*redelivered*). Each round also checks that,
  per key, the survivor's first deliveries come in publish order (*order kept*).
  Beside it, in the same run, the anchor: the same with the lease this round started
  from (3 s), on NATS and Redis.
* **NATS node killed** (a private 3-node cluster, channel with ``replicas=3``): the node
  leading the channel's stream, or the one leading the lease bucket, is SIGKILLed;
  the figure is the seconds from the kill until a message published after it is
  delivered (the longest the pipeline stood still).

Shared servers: ``SEAWALL_BENCH_NATS_URL``, ``…_REDIS_URL``, ``…_RABBITMQ_URL`` (the
usual local defaults); what is made there is deleted. ``seawall broker`` and the NATS
cluster are processes of this script's own, on free ports, ended at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path

from seawall import ChannelSpec, ConnectionLost, Message, Transport, partition_for, uuid7
from seawall.transports import connect

ROOT = Path(__file__).resolve().parent.parent
NATS_URL = os.environ.get("SEAWALL_BENCH_NATS_URL", "nats://127.0.0.1:4222")
REDIS_URL = os.environ.get("SEAWALL_BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
RABBITMQ_URL = os.environ.get("SEAWALL_BENCH_RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672/")
PARTITIONS, KEYS, RATE = 4, 8, 200
GROUP = "failover"
LIMIT = 60.0  # seconds a round may wait for the survivor
NODE_OPTIONS = os.environ.get("SEAWALL_BENCH_NATS_OPTIONS", "")  # e.g. "&pull_expires=1"


# -- the child: a member that is killed --------------------------------------------------
async def child(url: str, channel: str) -> None:
    """Join ``GROUP``; ack each delivery 50 ms after it came; say ``ready`` once joined."""
    transport = connect(url)
    sub = await transport.subscribe(channel, group=GROUP, prefetch=8)
    print("ready", flush=True)
    async for delivery in sub:
        await asyncio.sleep(0.05)
        await sub.ack(delivery)


# -- one round of "owner killed" ---------------------------------------------------------
@dataclass
class Seen:
    """What the survivor delivered: (time, key, number, attempt)."""

    deliveries: list[tuple[float, str, int, int]] = field(default_factory=list)


def _message(n: int) -> Message:
    return Message(
        id=uuid7(),
        type="bench.Tick",
        source="bench",
        data=str(n).encode(),
        partitionkey=f"k{n % KEYS}",
    )


async def _publish_steadily(transport: Transport, channel: str, stop: asyncio.Event) -> None:
    n = 0
    while not stop.is_set():
        with contextlib.suppress(ConnectionLost):
            await transport.publish(channel, _message(n))
            n += 1
        await asyncio.sleep(1 / RATE)


async def _survive(transport: Transport, channel: str, seen: Seen, stop: asyncio.Event) -> None:
    while not stop.is_set():
        try:
            sub = await transport.subscribe(channel, group=GROUP, prefetch=8)
        except ConnectionLost:
            await asyncio.sleep(0.02)
            continue
        try:
            async for d in sub:
                key = d.message.partitionkey or ""
                seen.deliveries.append((time.monotonic(), key, int(d.message.data), d.attempt))
                await sub.ack(d)
                if stop.is_set():
                    break
        except ConnectionLost:
            pass
        finally:
            await sub.close()


def _start_child(url: str, channel: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'src'}{os.pathsep}{ROOT}"}
    command = [sys.executable, "-m", "benchmarks.failover", "--child", url, channel]
    proc = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, text=True, cwd=ROOT)
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "ready"
    return proc


@dataclass
class Round:
    resumed: float
    redelivered: float | None
    order_kept: bool


async def owner_killed(url: str, child_url: str) -> Round:
    """One round on a fresh channel; see the module docstring."""
    channel = f"failover-{uuid.uuid4().hex[:8]}"
    transport = connect(url)
    try:
        await transport.declare(ChannelSpec(name=channel, partitions=PARTITIONS))
        seen, stop = Seen(), asyncio.Event()
        async with asyncio.TaskGroup() as tasks:
            survivor = tasks.create_task(_survive(transport, channel, seen, stop))
            await asyncio.sleep(0.3)
            proc = await asyncio.to_thread(_start_child, child_url, channel)
            tasks.create_task(_publish_steadily(transport, channel, stop))
            await asyncio.sleep(2.0)  # the child owns its half by now, and is busy with it
            theirs = _partitions_of_the_child(seen, time.monotonic() - 0.5)
            proc.send_signal(signal.SIGKILL)
            killed = time.monotonic()
            proc.wait()
            result = await _measure(seen, theirs, killed)
            stop.set()
            survivor.cancel()  # it may be waiting for a delivery that never comes
        return result
    finally:
        with contextlib.suppress(Exception):
            await transport.delete(channel)
        await transport.close()


def _partitions_of_the_child(seen: Seen, since: float) -> set[int]:
    mine = {partition_for(key, PARTITIONS) for t, key, _, _ in seen.deliveries if t >= since}
    return set(range(PARTITIONS)) - mine


async def _measure(seen: Seen, theirs: set[int], killed: float) -> Round:
    resumed = redelivered = None
    deadline = killed + LIMIT
    while time.monotonic() < deadline and (resumed is None or redelivered is None):
        if resumed is not None:  # a redelivery comes before the next of its key, or late
            deadline = min(deadline, killed + resumed + 2.0)
        for t, key, _, attempt in seen.deliveries:
            if t < killed or partition_for(key, PARTITIONS) not in theirs:
                continue
            resumed = t - killed if resumed is None else resumed
            if attempt > 1 and redelivered is None:
                redelivered = t - killed
        await asyncio.sleep(0.01)
    assert resumed is not None, f"the survivor took nothing over within {LIMIT} s"
    await asyncio.sleep(0.5)
    return Round(resumed, redelivered, _order_kept(seen))


def _order_kept(seen: Seen) -> bool:
    """Per key, the survivor's first deliveries of each number come in publish order."""
    by_key: dict[str, list[int]] = {}
    for _, key, number, _ in seen.deliveries:
        by_key.setdefault(key, []).append(number)
    return all((firsts := list(dict.fromkeys(ns))) == sorted(firsts) for ns in by_key.values())


# -- the transports ----------------------------------------------------------------------
@contextlib.asynccontextmanager
async def seawall_broker() -> AsyncIterator[str]:
    """A ``seawall broker`` process of our own; its URL."""
    from tests.broker_process import start_broker
    from tests.brokers import free_port

    with tempfile.TemporaryDirectory(prefix="seawall-failover-") as data:
        port = free_port()
        proc = await asyncio.to_thread(start_broker, Path(data), port)
        try:
            yield f"seawall://127.0.0.1:{port}"
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(10)


@contextlib.asynccontextmanager
async def redis_prefix(lease: float | None) -> AsyncIterator[str]:
    import redis.asyncio

    prefix = f"bench-failover-{uuid.uuid4().hex[:8]}"
    query = f"?prefix={prefix}" + (f"&lease={lease}" if lease else "")
    try:
        yield REDIS_URL + query
    finally:
        client = redis.asyncio.Redis.from_url(REDIS_URL)
        keys = [k async for k in client.scan_iter(match=f"{prefix}:*", count=1000)]
        if keys:
            await client.delete(*keys)
        await client.aclose()


def _with(url: str, lease: float | None) -> str:
    return url if lease is None else f"{url}{'&' if '?' in url else '?'}lease={lease}"


async def owner_rows(rounds: int) -> None:
    async def run(name: str, url: str) -> None:
        _row(name, [await owner_killed(url, url) for _ in range(rounds)])

    async with seawall_broker() as url:
        await run("seawall:// (broker process)", url)
    for lease, label in ((None, "now"), (3.0, "anchor: lease 3 s")):
        await run(f"NATS, {label}", _with(NATS_URL, lease))
        async with redis_prefix(lease) as url:
            await run(f"Redis, {label}", url)
    await run("RabbitMQ", RABBITMQ_URL)


def _row(name: str, results: list[Round]) -> None:
    resumed = [r.resumed for r in results]
    again = [r.redelivered for r in results if r.redelivered is not None]
    kept = sum(r.order_kept for r in results)
    print(
        f"{name:28} {_median(resumed)} ({_spread(resumed):>9}) "
        f"{_median(again)} ({_spread(again):>9}) {kept}/{len(results)}"
        + ("" if len(again) == len(results) else f"  [{len(again)} rounds had a redelivery]"),
        flush=True,
    )


# -- NATS node killed --------------------------------------------------------------------
async def node_killed(victim: str, rounds: int) -> list[float]:
    from tests.nats_cluster import Cluster

    pauses = []
    for _ in range(rounds):
        with tempfile.TemporaryDirectory(prefix="seawall-nats-cluster-") as root:
            cluster = Cluster(Path(root))
            cluster.start()
            try:
                await cluster.ready()
                pauses.append(await _one_node(cluster, victim))
            finally:
                cluster.stop()
    return pauses


async def _one_node(cluster: object, victim: str) -> float:
    from tests.nats_cluster import Cluster

    assert isinstance(cluster, Cluster)
    transport = connect(f"{cluster.url}?replicas=3{NODE_OPTIONS}")
    channel = "failover"
    try:
        await transport.declare(ChannelSpec(name=channel, partitions=PARTITIONS))
        seen, stop = Seen(), asyncio.Event()
        published: dict[int, float] = {}
        async with asyncio.TaskGroup() as tasks:
            survivor = tasks.create_task(_survive(transport, channel, seen, stop))
            tasks.create_task(_publish_noting(transport, channel, published, stop))
            await asyncio.sleep(2.0)
            stream = "KV_seawall_leases" if victim == "lease bucket" else "SEAWALL_failover"
            cluster.node(await cluster.leader(stream)).kill()
            killed = time.monotonic()
            pause = await _first_after(seen, published, killed)
            stop.set()
            survivor.cancel()
        return pause
    finally:
        await transport.close()


async def _publish_noting(
    transport: Transport, channel: str, published: dict[int, float], stop: asyncio.Event
) -> None:
    n = 0
    while not stop.is_set():
        started = time.monotonic()
        with contextlib.suppress(ConnectionLost):
            await transport.publish(channel, _message(n))
            published[n] = started
            n += 1
        await asyncio.sleep(1 / RATE)


async def _first_after(seen: Seen, published: dict[int, float], killed: float) -> float:
    deadline = killed + LIMIT
    while time.monotonic() < deadline:
        after = [t for t, _, n, _ in seen.deliveries if published.get(n, 0) > killed]
        if after:
            return min(after) - killed
        await asyncio.sleep(0.01)
    raise AssertionError(f"nothing published after the kill was delivered within {LIMIT} s")


# -- report ------------------------------------------------------------------------------
def _median(values: list[float]) -> str:
    return f"{statistics.median(values):6.2f} s" if values else "     n/a"


def _spread(values: list[float]) -> str:
    return f"{min(values):.2f}-{max(values):.2f}" if values else "n/a"


async def main(rounds: int, only: Callable[[str], bool]) -> None:
    logging.getLogger("nats").setLevel(logging.CRITICAL)  # a killed node's refusals, expected
    print(f"fail-over, medians of {rounds} rounds (range in brackets)", flush=True)
    if only("owner"):
        print("\nowner of 2 of 4 partitions killed (kill -9), survivor takes over", flush=True)
        print(f"{'transport':28} {'resumed':>8} {'':11} {'redelivered':>8} {'':11} order kept")
        await owner_rows(rounds)
    if only("nats-node"):
        print("\n3-node NATS cluster, channel replicas=3: one node killed (kill -9)")
        for victim in ("stream leader", "lease bucket"):
            pauses = await node_killed(victim, rounds)
            print(f"node leading the {victim:14} {_median(pauses)} ({_spread(pauses)})", flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m benchmarks.failover", description=__doc__)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--only", choices=["owner", "nats-node"], action="append")
    parser.add_argument("--child", nargs=2, metavar=("URL", "CHANNEL"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        asyncio.run(child(*args.child))
    else:
        asyncio.run(main(args.rounds, lambda name: not args.only or name in args.only))
