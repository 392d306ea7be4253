"""What a test run left on the shared broker servers, found by the run's marker.

Every name a test gives on a shared server carries :data:`tests.brokers.RUN`
(through :func:`tests.brokers.unique`), so at the end of the run whatever still
carries it was made by this run and not deleted: NATS streams, RabbitMQ queues
and exchanges, Redis keys. Other runs on the same servers have other markers.

Broker-wide objects that every seawall process shares are not a test's to
delete and carry no marker: the NATS lease bucket (``KV_seawall_leases``,
whose entries expire after the lease) and RabbitMQ's delay queues
(``seawall.delay.<step>ms``, which other processes may be using).

Registry reader groups (``registry.<instance>`` on the registry channels, see
:mod:`seawall.discovery.channel`) carry no marker either: a process's instance
id names them. Those that expire (``x-expires`` on RabbitMQ, ``inactive_threshold``
on NATS) go by themselves, as the broker deletes them once idle. One that never
expires, has no member at the end of the run and was not there when the run
first used the server (:func:`note_readers`) was left by this run (or by another
run on the same server meanwhile, which is why the check notes the time) and is
reported as a leftover too.

``rabbitmqctl`` lists RabbitMQ's objects (AMQP cannot); it needs to run as a
user that may (root on the CI machine).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import shutil
import subprocess

from tests.brokers import NATS, RABBITMQ, REDIS, RUN, Server

__all__ = ["delete", "find", "note_readers"]

Leftover = tuple[Server, str, str]
"""(server, kind, name): kind is "stream", "queue", "exchange", "key" or "consumer"
(``<stream> <consumer>``)."""

_READERS_BEFORE: dict[Server, set[str]] = {}
"""Idle registry reader groups that never expire, as found when the run first used a
server: not this run's."""


def note_readers(server: Server) -> None:
    """Note the idle, never-expiring registry reader groups ``server`` has now (they
    are not this run's); called when the run first uses the server."""
    listers = {NATS: _nats_readers, RABBITMQ: _rabbitmq_readers}
    if server in listers and server not in _READERS_BEFORE:
        # a thread of its own: a test calling require() may run in an event loop already
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            noted = pool.submit(asyncio.run, listers[server](server.url))
            try:
                _READERS_BEFORE[server] = noted.result(timeout=90)
            except Exception:  # the end of the run reports what it cannot see
                _READERS_BEFORE[server] = set()


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


# -- registry readers -------------------------------------------------------------
def _registry() -> tuple[str, list[str], list[str]]:
    """The reader groups' token prefix, the registry streams (NATS), and what the
    names of the reader groups' queues start with (RabbitMQ, one partition)."""
    from seawall._transport.assignment import token
    from seawall.discovery import REGISTRY_CHANNEL
    from seawall.discovery.channel import KNOWN_CHANNEL, reader_group
    from seawall.transports.nats._wire import STREAM_PREFIX
    from seawall.transports.rabbitmq._layout import Layout

    channels = (REGISTRY_CHANNEL, KNOWN_CHANNEL)
    streams = [STREAM_PREFIX + token(channel) for channel in channels]
    queues = [Layout(channel, 1).queue(reader_group(""), 0)[:-2] for channel in channels]
    return token(reader_group("")), streams, queues


# -- NATS ---------------------------------------------------------------------------
async def _nats(url: str) -> list[tuple[str, str]]:
    import nats

    client = await nats.connect(url)
    try:
        infos = await client.jetstream().streams_info()
    finally:
        await client.close()
    found = [("stream", i.config.name) for i in infos if i.config.name and RUN in i.config.name]
    readers = await _nats_readers(url) - _READERS_BEFORE.get(NATS, set())
    return found + [("consumer", name) for name in sorted(readers)]


async def _nats_readers(url: str) -> set[str]:
    """``<stream> <consumer>`` of the registry reader groups without a pull waiting, a
    delivery unsettled or an inactive threshold."""
    import nats
    import nats.js.errors

    prefix, streams, _ = _registry()
    client = await nats.connect(url)
    found: set[str] = set()
    try:
        js = client.jetstream()
        for stream in streams:
            with contextlib.suppress(nats.js.errors.NotFoundError):
                for info in await js.consumers_info(stream):
                    name = info.name or ""
                    idle = not info.num_waiting and not info.num_ack_pending
                    lasting = not info.config.inactive_threshold
                    if name.startswith(prefix) and idle and lasting:
                        found.add(f"{stream} {name}")
    finally:
        await client.close()
    return found


async def _delete_nats(url: str, doomed: list[tuple[str, str]]) -> None:
    import nats
    import nats.js.errors

    client = await nats.connect(url)
    try:
        js = client.jetstream()
        for kind, name in doomed:
            with contextlib.suppress(nats.js.errors.NotFoundError):
                if kind == "consumer":
                    await js.delete_consumer(*name.split(" "))
                else:
                    await js.delete_stream(name)
    finally:
        await client.close()


# -- RabbitMQ -----------------------------------------------------------------------
async def _rabbitmq(url: str) -> list[tuple[str, str]]:
    rows = await asyncio.to_thread(_rabbitmqctl, "list_queues", "name", "consumers", "arguments")
    found = [("queue", row.split("\t")[0]) for row in rows if RUN in row.split("\t")[0]]
    exchanges = await asyncio.to_thread(_rabbitmqctl, "list_exchanges", "name")
    found += [("exchange", name) for name in exchanges if RUN in name]
    readers = _lasting_readers(rows) - _READERS_BEFORE.get(RABBITMQ, set())
    return found + [("queue", name) for name in sorted(readers)]


async def _rabbitmq_readers(url: str) -> set[str]:
    rows = await asyncio.to_thread(_rabbitmqctl, "list_queues", "name", "consumers", "arguments")
    return _lasting_readers(rows)


def _lasting_readers(rows: list[str]) -> set[str]:
    """The queues of registry reader groups with no consumer and no ``x-expires``, from
    ``list_queues name consumers arguments``."""
    _, _, prefixes = _registry()
    found: set[str] = set()
    for row in rows:
        name, consumers, arguments = [*row.split("\t"), "", ""][:3]
        reader = name.startswith(tuple(prefixes))
        if reader and consumers == "0" and '"x-expires"' not in arguments:
            found.add(name)
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
