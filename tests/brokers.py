"""Shared plumbing for tests against real broker servers.

Each server's URL comes from an environment variable with a local default.
:func:`require` checks that the server answers on its port: if it does not,
the test fails when ``CI=true`` (CI must never pass by skipping) and is
skipped otherwise, with a message naming the server and the command that
starts it (the same commands ``.ci/services`` runs).

Tests on the shared servers delete what they make: :func:`cleanup_streams`
(NATS), :func:`cleanup_rabbitmq` and :func:`scratch_prefix` (Redis). Each
imports its driver when used, so a test that needs none loads none.

Every name a test gives a channel, a service or a key prefix on a shared server
carries :data:`RUN`, this test run's marker (:func:`unique` makes such names),
so that ``tests/conftest.py`` can find, at the end of the run, whatever the run
left on the servers it used, without mistaking what other runs on the same
servers are doing for it (see :mod:`tests.leftovers`).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import signal
import socket
import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import NoReturn
from urllib.parse import urlsplit

import pytest

__all__ = [
    "NATS",
    "POSTGRES",
    "RABBITMQ",
    "REDIS",
    "OwnServer",
    "Server",
    "cleanup_rabbitmq",
    "cleanup_streams",
    "free_port",
    "killed_at_exit",
    "RUN",
    "USED",
    "require",
    "scratch_prefix",
    "unique",
]

RUN = f"t{secrets.token_hex(4)}"
"""This test run's marker: letters and digits, so it survives in every broker's names."""


@dataclass(frozen=True)
class Server:
    """A broker server the tests can use."""

    name: str
    env: str
    default_url: str
    start: str
    """The command that starts it on this machine."""

    @property
    def url(self) -> str:
        return os.environ.get(self.env) or self.default_url

    def reachable(self, timeout: float = 0.5) -> bool:
        """Whether something accepts TCP connections at the URL's host and port."""
        parts = urlsplit(self.url)
        try:
            with socket.create_connection((parts.hostname, parts.port), timeout=timeout):
                return True
        except OSError:
            return False


NATS = Server(
    "NATS (JetStream)",
    "SEAWALL_TEST_NATS_URL",
    "nats://127.0.0.1:4222",
    "start-stop-daemon --start --oknodo --background --exec /usr/sbin/nats-server -- "
    "-a 127.0.0.1 -p 4222 -js -sd /var/lib/nats-server -l /var/log/nats-server.log",
)
RABBITMQ = Server(
    "RabbitMQ",
    "SEAWALL_TEST_RABBITMQ_URL",
    "amqp://guest:guest@127.0.0.1:5672/",
    "rabbitmq-server -detached",
)
REDIS = Server(
    "Redis",
    "SEAWALL_TEST_REDIS_URL",
    "redis://127.0.0.1:6379/0",
    'redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" '
    "--appendonly no --dir /var/lib/redis --logfile /var/log/redis/ci.log",
)
POSTGRES = Server(
    "PostgreSQL",
    "SEAWALL_TEST_POSTGRES_URL",
    "postgresql://postgres@127.0.0.1:5432/test",
    "pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start",
)


def _missing(message: str) -> NoReturn:
    """Fail under CI (it must never pass by skipping), skip elsewhere."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message)
    pytest.skip(message)


def unique(label: str) -> str:
    """A name for a channel, service or key prefix on a shared server: ``label``, this
    run's marker, and a part no other test of the run uses."""
    return f"{label}-{RUN}-{uuid.uuid4().hex[:8]}"


USED: set[Server] = set()
"""The servers this run has asked for (:func:`require`): those checked for leftovers."""


def require(server: Server) -> str:
    """The server's URL; fails (CI) or skips (elsewhere) the test if it is unreachable."""
    if server.reachable():
        if server not in USED:
            from tests import leftovers  # which imports this module

            leftovers.note_readers(server)
        USED.add(server)
        return server.url
    message = (
        f"{server.name} is not reachable at {server.url} (set {server.env} to use another); "
        f"start it with: {server.start}  (or run .ci/services)"
    )
    _missing(message)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class OwnServer:
    """A broker server process of a test's own on a spare loopback port.

    The fault tests start, SIGKILL and restart it; ``command`` is the executable
    and its arguments (the port is in :attr:`port`), ``package`` the Debian
    package that installs it, for the message when it is missing.
    """

    def __init__(self, command: list[str], port: int, url: str, package: str) -> None:
        if not os.access(command[0], os.X_OK):
            _missing(f"{command[0]} is not installed (apt-get install {package})")
        self.command, self.port, self.url = command, port, url
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            self.command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )

    def kill(self) -> None:
        """SIGKILL: no goodbye to clients or peers, as a crash or a power loss."""
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    async def listening(self) -> None:
        """Return once the server accepts TCP connections (10 s at most)."""
        async with asyncio.timeout(10):
            while True:
                with contextlib.suppress(OSError):
                    _, writer = await asyncio.open_connection("127.0.0.1", self.port)
                    writer.close()
                    return
                await asyncio.sleep(0.02)


@contextlib.contextmanager
def killed_at_exit(*servers: OwnServer) -> Iterator[None]:
    """Kill every server when the block ends, however it ends."""
    try:
        yield
    finally:
        for server in servers:
            server.kill()


@contextlib.asynccontextmanager
async def cleanup_streams() -> AsyncIterator[set[str]]:
    """Collect NATS JetStream stream names in the yielded set; they are deleted on exit."""
    import nats

    doomed: set[str] = set()
    try:
        yield doomed
    finally:
        client = await nats.connect(require(NATS))
        js = client.jetstream()
        for name in doomed:
            with contextlib.suppress(nats.js.errors.NotFoundError):
                await js.delete_stream(name)
        await client.close()


@contextlib.asynccontextmanager
async def cleanup_rabbitmq() -> AsyncIterator[set[tuple[str, str]]]:
    """Collect RabbitMQ ("queue" | "exchange", name) pairs in the yielded set; deleted on exit."""
    import aio_pika

    doomed: set[tuple[str, str]] = set()
    try:
        yield doomed
    finally:
        connection = await aio_pika.connect(require(RABBITMQ))
        async with connection:
            for kind, name in sorted(doomed, reverse=True):  # queues before exchanges
                channel = await connection.channel()
                with contextlib.suppress(aio_pika.exceptions.AMQPError):
                    if kind == "queue":
                        await channel.queue_delete(name)
                    else:
                        await channel.exchange_delete(name)
                with contextlib.suppress(aio_pika.exceptions.AMQPError):
                    await channel.close()


@contextlib.asynccontextmanager
async def scratch_prefix() -> AsyncIterator[str]:
    """A Redis key prefix no other run uses; every key under it is deleted on exit."""
    import redis.asyncio

    prefix = unique("seawall-test")
    try:
        yield prefix
    finally:
        client = redis.asyncio.Redis.from_url(require(REDIS))
        keys = [key async for key in client.scan_iter(match=f"{prefix}:*", count=1000)]
        if keys:
            await client.delete(*keys)
        await client.aclose()
