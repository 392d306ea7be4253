"""Options given in the URL, or in seawall.toml, reach the real brokers.

One test per broker and per way in: NATS shows them in the JetStream consumer
config, Redis in its key names and expiry, RabbitMQ in how long a publisher
waits for room its reject-publish queue refuses. Every stream, key, queue and
exchange a test makes is deleted after it.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aio_pika
import nats
import nats.js.errors
import pytest
import redis.asyncio
from tests.brokers import NATS, RABBITMQ, REDIS, require, unique

from seawall import ChannelFull, ChannelSpec, MessageTooLarge, Transport
from seawall._transport.assignment import token
from seawall._up.config import load_up_config
from seawall.testing._conformance import make_message
from seawall.transports import connect

pytestmark = pytest.mark.integration


def named(label: str) -> str:
    return unique(f"options-test.{label}")


def toml_url(tmp_path: Path, url: str, options: str) -> str:
    """The URL ``seawall up`` gives its services for a seawall.toml with these options."""
    path = tmp_path / "seawall.toml"
    path.write_text(
        f'[transport]\nurl = "{url}"\n[transport.options]\n{options}\n'
        '[services.a]\ntarget = "m:a"\n'
    )
    return load_up_config(path).transport


@contextlib.asynccontextmanager
async def closing(transport: Transport) -> AsyncIterator[Transport]:
    try:
        yield transport
    finally:
        await transport.close()


# -- NATS JetStream ----------------------------------------------------------------------
async def nats_consumer_config(url: str, channel: str) -> tuple[int, float, int]:
    """Replicas, AckWait and MaxAckPending the server holds for the channel's group."""
    stream = "SEAWALL_" + token(channel)
    client = await nats.connect(require(NATS))
    try:
        async with closing(connect(url)) as transport:
            await transport.declare(ChannelSpec(name=channel))
            sub = await transport.subscribe(channel, group="workers")
            await sub.close()
        js = client.jetstream()
        info = await js.consumer_info(stream, token("workers"))
        replicas = (await js.stream_info(stream)).config.num_replicas
        assert info.config.ack_wait is not None
        assert info.config.max_ack_pending is not None
        return replicas or 1, info.config.ack_wait, info.config.max_ack_pending
    finally:
        with contextlib.suppress(nats.js.errors.NotFoundError):
            await client.jetstream().delete_stream(stream)
        await client.close()


async def test_nats_options_in_the_url_reach_the_consumer() -> None:
    url = f"{require(NATS)}?replicas=1&ack_wait=7&max_ack_pending=123"
    assert await nats_consumer_config(url, named("nats")) == (1, 7.0, 123)


async def test_nats_options_in_seawall_toml_reach_the_consumer(tmp_path: Path) -> None:
    url = toml_url(tmp_path, require(NATS), "ack_wait = 9\nmax_ack_pending = 77")
    assert await nats_consumer_config(url, named("nats")) == (1, 9.0, 77)


# -- Redis Streams -----------------------------------------------------------------------
async def redis_keys(url: str, prefix: str) -> dict[str, int]:
    """The keys a transport on ``url`` writes for a channel and a reply inbox, with their
    time to live in ms (-1: none), all deleted afterwards."""
    client = redis.asyncio.Redis.from_url(require(REDIS))
    try:
        async with closing(connect(url)) as transport:
            channel = named("redis")
            await transport.publish(channel, make_message(1))
            await transport.declare(ChannelSpec(name=unique("_inbox.test"), ephemeral=True))
        keys = [key.decode() async for key in client.scan_iter(match=f"{prefix}:*", count=1000)]
        return {key: await client.pttl(key) for key in keys}
    finally:
        doomed = [key async for key in client.scan_iter(match=f"{prefix}:*", count=1000)]
        if doomed:
            await client.delete(*doomed)
        await client.aclose()


async def test_redis_options_in_the_url_reach_the_key_names() -> None:
    prefix = unique("seawall-options")
    keys = await redis_keys(f"{require(REDIS)}?prefix={prefix}&ephemeral_ttl=45", prefix)
    assert any(":meta" in key for key in keys), keys  # the channel, under our prefix
    expiring = [ttl for ttl in keys.values() if ttl > 0]  # the inbox's keys
    assert expiring, keys
    assert all(ttl <= 45_000 for ttl in expiring), expiring  # not the default 60 s


async def test_redis_options_in_seawall_toml_reach_the_key_names(tmp_path: Path) -> None:
    prefix = unique("seawall-options")
    url = toml_url(tmp_path, require(REDIS), f'prefix = "{prefix}"\nephemeral_ttl = 40')
    keys = await redis_keys(url, prefix)
    assert any(":meta" in key for key in keys), keys
    assert all(ttl <= 40_000 for ttl in keys.values() if ttl > 0), keys


# -- RabbitMQ ----------------------------------------------------------------------------
async def rabbitmq_gives_up_after(url: str) -> tuple[float, str]:
    """How long a publisher on ``url`` waited for room in a full channel, and what it said."""
    transport = connect(url)
    try:
        channel = named("rabbitmq")
        await transport.declare(ChannelSpec(name=channel, max_messages=1))
        await transport.publish(channel, make_message(1))
        started = time.monotonic()
        with pytest.raises(ChannelFull) as caught:
            await transport.publish(channel, make_message(2))  # RabbitMQ refuses it
        return time.monotonic() - started, str(caught.value)
    finally:
        await transport.close()
        await delete_rabbitmq_objects(transport)


async def delete_rabbitmq_objects(transport: Transport) -> None:
    made: set[tuple[str, str]] = transport.topology.made  # type: ignore[attr-defined]
    connection = await aio_pika.connect(require(RABBITMQ))
    async with connection:
        for kind, name in sorted(made, reverse=True):  # queues before exchanges
            channel = await connection.channel()
            with contextlib.suppress(aio_pika.exceptions.AMQPError):
                if kind == "queue":
                    await channel.queue_delete(name)
                else:
                    await channel.exchange_delete(name)
            with contextlib.suppress(aio_pika.exceptions.AMQPError):
                await channel.close()


async def test_rabbitmq_options_in_the_url_reach_the_publisher() -> None:
    base = require(RABBITMQ)
    waited, said = await rabbitmq_gives_up_after(f"{base}?publish_timeout=0.3&heartbeat=30")
    assert 0.3 <= waited < 5.0, waited  # not the default 30 s
    assert "within 0.3 s" in said
    async with closing(connect(f"{base}?max_message_bytes=2000")) as transport:
        assert transport.capabilities.max_message_bytes == 2000
        with pytest.raises(MessageTooLarge):
            await transport.publish(named("big"), make_message(1, data=b"x" * 4000))


async def test_rabbitmq_options_in_seawall_toml_reach_the_publisher(tmp_path: Path) -> None:
    waited, said = await rabbitmq_gives_up_after(
        toml_url(tmp_path, require(RABBITMQ), "publish_timeout = 0.4")
    )
    assert 0.4 <= waited < 5.0, waited
    assert "within 0.4 s" in said
