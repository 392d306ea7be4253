"""Fail-over on a private 3-node NATS cluster: seawall's coordination state is replicated
as the channel is, so killing the node leading the lease bucket stops nothing for good
and loses nothing acknowledged (a stream leader's death is JetStream's own replication;
``benchmarks/failover.py`` measures both).

Each test starts its own cluster (``tests.nats_cluster``), SIGKILLs a node, and checks
that every message acknowledged to the publisher is delivered, in order per key. How
long delivery pauses is measured by ``benchmarks/failover.py``, not asserted here.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from tests.brokers import _missing
from tests.nats_cluster import NATS_SERVER, Cluster

from seawall import ChannelSpec, ConnectionLost, Message, uuid7
from seawall.transports.nats import NatsTransport

pytestmark = pytest.mark.slow

LEASES = "KV_seawall_leases"


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[Cluster]:
    if not os.access(NATS_SERVER, os.X_OK):
        _missing(f"{NATS_SERVER} is not installed (apt-get install nats-server)")
    nodes = Cluster(tmp_path)
    nodes.start()
    try:
        await nodes.ready()
        yield nodes
    finally:
        nodes.stop()


async def _replicas(transport: NatsTransport, stream: str) -> int:
    info = await (await transport.link()).stream_info(stream)
    return int(info.config.num_replicas or 1)


async def _consume(transport: NatsTransport, want: int, seen: dict[str, list[int]]) -> None:
    """Read ``orders`` as group ``billing`` until ``want`` distinct numbers were seen in
    all, subscribing again whenever the link breaks (as a dispatcher does)."""
    got = {n for numbers in seen.values() for n in numbers}
    while len(got) < want:
        try:
            sub = await transport.subscribe("orders", group="billing", prefetch=16)
        except ConnectionLost:  # JetStream electing a leader: the supervisor tries again
            await asyncio.sleep(0.05)
            continue
        try:
            async for delivery in sub:
                number = int(delivery.message.data)
                seen.setdefault(delivery.message.partitionkey or "", []).append(number)
                got.add(number)
                await sub.ack(delivery)
                if len(got) >= want:
                    break
        except ConnectionLost:
            await asyncio.sleep(0.05)
        finally:
            await sub.close()


def _in_order(seen: dict[str, list[int]]) -> None:
    """Per key, numbers never go back, except where a redelivery repeats earlier ones."""
    for key, numbers in seen.items():
        firsts = list(dict.fromkeys(numbers))  # first deliveries, in order
        assert firsts == sorted(firsts), f"key {key}: out of order {numbers}"


async def _publish(transport: NatsTransport, numbers: range) -> None:
    for n in numbers:
        message = Message(
            id=uuid7(),
            type="failover.Ordered",
            source="test",
            data=str(n).encode(),
            partitionkey=f"k{n % 4}",
        )
        await transport.publish("orders", message)


async def test_killing_the_lease_buckets_node_keeps_ownership_and_loses_nothing(
    cluster: Cluster,
) -> None:
    transport = await NatsTransport.connect(cluster.url, replicas=3, lease=1.5)
    try:
        # a bucket left by an older seawall with one replica is raised to the channel's
        js = await transport.link()
        await js.create_key_value(bucket="seawall_leases", history=1, ttl=1.5, replicas=1)
        await transport.declare(ChannelSpec(name="orders", partitions=4))
        await _publish(transport, range(40))
        seen: dict[str, list[int]] = {}
        await _consume(transport, 20, seen)  # a member owns the partitions now
        assert await _replicas(transport, LEASES) == 3
        assert await _replicas(transport, "SEAWALL_orders") == 3
        # with one replica the bucket died with its node: no member could renew or take
        # a partition again until it came back (the bucket is seawall's own state)
        cluster.node(await cluster.leader(LEASES)).kill()
        await _publish(transport, range(40, 80))  # waits out the election, within its deadline
        async with asyncio.timeout(40):
            await _consume(transport, 80, seen)
        assert {n for numbers in seen.values() for n in numbers} == set(range(80))
        _in_order(seen)
    finally:
        await transport.close()
