"""What a test run left on the shared broker servers, found by the run's marker.

Every name a test gives on a shared server carries :data:`tests.brokers.RUN`
(through :func:`tests.brokers.unique`), so at the end of the run whatever still
carries it was made by this run and not deleted: NATS streams, RabbitMQ queues
and exchanges, Redis keys. Other runs on the same servers have other markers.

Broker-wide objects that every seawall process shares are not a test's to
delete and carry no marker: the NATS lease bucket (``KV_seawall_leases``,
whose entries expire after the lease) and RabbitMQ's delay queues
(``seawall.delay.<step>ms``, which other processes may be using).

``rabbitmqctl`` lists RabbitMQ's objects (AMQP cannot); it needs to run as a
user that may (root on the CI machine).
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import subprocess

from tests.brokers import NATS, RABBITMQ, REDIS, RUN, Server

__all__ = ["delete", "find"]

Leftover = tuple[Server, str, str]
"""(server, kind, name): kind is "stream", "queue", "exchange" or "key"."""


def find(servers: set[Server]) -> tuple[list[Leftover], list[str]]:
    """What this run left on ``servers``, and the servers that could not be looked at."""
    return asyncio.run(_find(servers))


async def _find(servers: set[Server]) -> tuple[list[Leftover], list[str]]:
    found: list[Leftover] = []
    unknown: list[str] = []
    listers = {NATS: _nats, RABBITMQ: _rabbitmq, REDIS: _redis}
    for server in sorted(servers & listers.keys(), key=lambda s: s.name):
        try:
            found += [(server, kind, name) for kind, name in await listers[server](server.url)]
        except Exception as exc:
            unknown.append(f"{server.name}: {exc!r}")
    return found, unknown


def delete(leftovers: list[Leftover]) -> None:
    """Delete what :func:`find` found, so the next runs do not pile up on it."""
    asyncio.run(_delete(leftovers))


async def _delete(leftovers: list[Leftover]) -> None:
    deleters = {NATS: _delete_nats, RABBITMQ: _delete_rabbitmq, REDIS: _delete_redis}
    for server, deleter in deleters.items():
        mine = [(kind, name) for s, kind, name in leftovers if s == server]
        if mine:
            with contextlib.suppress(Exception):  # reported already; best effort
                await deleter(server.url, mine)


# -- NATS ---------------------------------------------------------------------------
async def _nats(url: str) -> list[tuple[str, str]]:
    import nats

    client = await nats.connect(url)
    try:
        infos = await client.jetstream().streams_info()
    finally:
        await client.close()
    return [("stream", i.config.name) for i in infos if i.config.name and RUN in i.config.name]


async def _delete_nats(url: str, doomed: list[tuple[str, str]]) -> None:
    import nats
    import nats.js.errors

    client = await nats.connect(url)
    try:
        js = client.jetstream()
        for _, name in doomed:
            with contextlib.suppress(nats.js.errors.NotFoundError):
                await js.delete_stream(name)
    finally:
        await client.close()


# -- RabbitMQ -----------------------------------------------------------------------
async def _rabbitmq(url: str) -> list[tuple[str, str]]:
    found: list[tuple[str, str]] = []
    for kind in ("queue", "exchange"):
        names = await asyncio.to_thread(_rabbitmqctl, f"list_{kind}s", "name")
        found += [(kind, name) for name in names if RUN in name]
    return found


def _rabbitmqctl(*args: str) -> list[str]:
    command = shutil.which("rabbitmqctl")
    if command is None:
        raise RuntimeError("rabbitmqctl is not installed: cannot list RabbitMQ's queues")
    out = subprocess.run(
        [command, "--quiet", "--no-table-headers", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return [line.strip() for line in out.stdout.splitlines() if line.strip()]


async def _delete_rabbitmq(url: str, doomed: list[tuple[str, str]]) -> None:
    import aio_pika

    connection = await aio_pika.connect(url)
    async with connection:
        channel = await connection.channel()
        amqp = await channel.get_underlay_channel()
        for kind, name in sorted(doomed, reverse=True):  # queues before exchanges
            if kind == "queue":
                await amqp.queue_delete(name)
            else:
                await amqp.exchange_delete(name)


# -- Redis --------------------------------------------------------------------------
async def _redis(url: str) -> list[tuple[str, str]]:
    import redis.asyncio

    client = redis.asyncio.Redis.from_url(url)
    try:
        keys = [key async for key in client.scan_iter(match=f"*{RUN}*", count=1000)]
    finally:
        await client.aclose()
    return [("key", key.decode(errors="replace")) for key in keys]


async def _delete_redis(url: str, doomed: list[tuple[str, str]]) -> None:
    import redis.asyncio

    client = redis.asyncio.Redis.from_url(url)
    try:
        await client.unlink(*[name for _, name in doomed])
    finally:
        await client.aclose()
