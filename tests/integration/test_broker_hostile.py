"""A hostile crowd against a real ``seawall broker`` process: bounded memory, service goes on.

The broker runs as its own process on a free loopback port, with one configured
client. Twice, 300 connections that never say Hello hit it at once: a third
announce a frame just under ``max_frame`` and stream its body, a third send
random bytes, and a third are slowloris sockets (half silent, half trickling a
Hello-sized frame a byte at a time). Meanwhile the configured client keeps
publishing and consuming, one message at a time, every one coming back. The
broker's resident memory (``VmRSS`` of ``/proc/<pid>/status``) is sampled
throughout: it must stay within :data:`PEAK_GROWTH` of the baseline measured
before the crowd came, and be back within :data:`AFTER_GROWTH` after each wave
(a second wave shows that nothing piles up). The slowloris sockets must be
closed by the broker within its Hello timeout (5 s by default) plus a margin for
a loaded machine. The README's broker section states these bounds.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import struct
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from tests.brokers import free_port

from seawall._wire.protocol import DEFAULT_MAX_FRAME
from seawall.testing._conformance import make_message
from seawall.transports.seawall import SeawallTransport

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "worker-token-0123456789abcdef"
CONFIG = f"""
[[client]]
name = "worker"
token = "{TOKEN}"
publish = ["work"]
subscribe = ["work"]
"""
EACH = 100
"""Hostile connections of each kind (big frames, noise, slowloris)."""
HELLO_TIMEOUT = 5.0
"""The broker's default: seconds a connection has to say Hello."""
MARGIN = 10.0
"""Extra seconds allowed on a loaded machine."""
MB = 1024 * 1024
PEAK_GROWTH = 32 * MB
AFTER_GROWTH = 8 * MB
WAVES = 2


def rss(pid: int) -> int:
    """Resident memory of process ``pid`` in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for process {pid}")


def start(
    tmp_path: Path, port: int, files: tuple[int, int] | None = None
) -> tuple[subprocess.Popen[bytes], Path]:
    """``seawall broker`` on ``port``, under ``ulimit -n`` (soft, hard) ``files`` if given;
    returns once it listens. Its stderr goes to a file."""
    config, log = tmp_path / "broker.toml", tmp_path / "broker.log"
    config.write_text(CONFIG)
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    command = [
        *(sys.executable, "-m", "seawall", "broker", "--data", str(tmp_path / "data")),
        *("--listen", f"127.0.0.1:{port}", "--config", str(config), "--sync", "none"),
    ]
    if files is not None:
        soft, hard = files
        shell = f'ulimit -Sn {soft} && ulimit -Hn {hard} && exec "$@"'
        command = ["sh", "-c", shell, "-", *command]
    with log.open("wb") as sink:
        proc = subprocess.Popen(command, env=env, stderr=sink)
    deadline = time.monotonic() + 30
    while "listening on" not in log.read_text():
        assert proc.poll() is None, log.read_text()
        assert time.monotonic() < deadline, "the broker did not start within 30 s"
        time.sleep(0.05)
    return proc, log


@dataclass
class Traffic:
    """The configured client's publishes and deliveries while the crowd is there."""

    sent: int = 0
    received: set[int] = field(default_factory=set)
    slowest: float = 0.0


async def serve_traffic(transport: SeawallTransport, traffic: Traffic, stop: asyncio.Event) -> None:
    """Publish and consume one message at a time until ``stop``; every one must come back."""
    sub = await transport.subscribe("work", group="worker", prefetch=16)
    deliveries = aiter(sub)
    try:
        while not stop.is_set():
            started = time.monotonic()
            await transport.publish("work", make_message(traffic.sent))
            traffic.sent += 1
            async with asyncio.timeout(MARGIN):
                delivery = await anext(deliveries)
            await sub.ack(delivery)
            traffic.received.add(int(delivery.message.data))
            traffic.slowest = max(traffic.slowest, time.monotonic() - started)
            await asyncio.sleep(0.01)
    finally:
        await sub.close()


async def until_closed(reader: asyncio.StreamReader, patience: float) -> float:
    """Seconds until the broker closes the connection (reads and drops what it sends).

    A connection still open after ``patience`` gives up waiting: the test then fails
    on the time, with the whole report.
    """
    started = time.monotonic()
    with contextlib.suppress(ConnectionError, TimeoutError):
        async with asyncio.timeout(patience):
            while await reader.read(65536):
                pass
    return time.monotonic() - started


async def big_frame(port: int) -> float:
    """Announce a frame just under ``max_frame``, then stream its body; seconds until closed."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    started = time.monotonic()
    body = os.urandom(64 * 1024)
    with contextlib.suppress(ConnectionError):
        writer.write(struct.pack(">I", DEFAULT_MAX_FRAME - 16))
        for _ in range(DEFAULT_MAX_FRAME // len(body)):
            writer.write(body)
            await writer.drain()
    await until_closed(reader, MARGIN)
    writer.close()
    return time.monotonic() - started


async def noise(port: int) -> float:
    """Random bytes, up to 2 MB of them; seconds until closed."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    started = time.monotonic()
    with contextlib.suppress(ConnectionError):
        for _ in range(32):
            writer.write(os.urandom(64 * 1024))
            await writer.drain()
    await until_closed(reader, MARGIN)
    writer.close()
    return time.monotonic() - started


async def silent(port: int) -> float:
    """Connect and say nothing; seconds until the broker gives up on it."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    waited = await until_closed(reader, HELLO_TIMEOUT + MARGIN)
    writer.close()
    return waited


async def trickle(port: int) -> float:
    """Send a Hello-sized frame one byte every half second; seconds until closed."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    started = time.monotonic()
    frame = struct.pack(">I", 1000) + bytes(1000)

    async def drip() -> None:
        with contextlib.suppress(ConnectionError):
            for byte in frame:
                writer.write(bytes([byte]))
                await writer.drain()
                await asyncio.sleep(0.5)

    async with asyncio.TaskGroup() as group:
        dripping = group.create_task(drip())
        await until_closed(reader, HELLO_TIMEOUT + MARGIN)
        dripping.cancel()
    writer.close()
    return time.monotonic() - started


async def watch(pid: int, samples: list[int], stop: asyncio.Event) -> None:
    while not stop.is_set():
        samples.append(rss(pid))
        await asyncio.sleep(0.05)


async def crowd(port: int) -> dict[str, list[float]]:
    """Every hostile connection at once; per kind, the seconds each took to be closed."""
    kinds: dict[str, Callable[[int], Awaitable[float]]] = {
        "big": big_frame,
        "noise": noise,
        "silent": silent,
        "trickle": trickle,
    }
    counts = {"big": EACH, "noise": EACH, "silent": EACH // 2, "trickle": EACH - EACH // 2}
    tasks: dict[str, list[asyncio.Task[float]]] = {kind: [] for kind in kinds}
    async with asyncio.TaskGroup() as group:
        order = [kind for kind, n in counts.items() for _ in range(n)]
        random.Random(7).shuffle(order)
        for kind in order:
            tasks[kind].append(group.create_task(kinds[kind](port)))
    return {kind: [task.result() for task in done] for kind, done in tasks.items()}


async def test_hostile_crowds_before_hello_neither_bloat_nor_stall_the_broker(
    tmp_path: Path,
) -> None:
    port = free_port()
    proc, log = start(tmp_path, port)
    try:
        transport = await SeawallTransport.connect(f"seawall://127.0.0.1:{port}", token=TOKEN)
        traffic, calm, done = Traffic(), asyncio.Event(), asyncio.Event()
        samples: list[int] = []
        async with asyncio.TaskGroup() as group:
            serving = group.create_task(serve_traffic(transport, traffic, done))
            await asyncio.sleep(2.0)  # warmed up: the baseline is the broker at work
            baseline = rss(proc.pid)
            before = traffic.sent
            watching = group.create_task(watch(proc.pid, samples, calm))
            closed: dict[str, list[float]] = {}
            after: list[int] = []
            for _ in range(WAVES):
                for kind, times in (await crowd(port)).items():
                    closed.setdefault(kind, []).extend(times)
                await asyncio.sleep(1.0)
                after.append(rss(proc.pid))
            calm.set()
            await watching
            done.set()
            await serving
        await transport.close()
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
    peak = max(samples)
    report = (
        f"broker RSS: baseline {baseline / MB:.1f} MB, peak {peak / MB:.1f} MB, after each "
        f"wave {', '.join(f'{a / MB:.1f}' for a in after)} MB; closed after (max s): "
        + ", ".join(f"{kind} {max(times):.2f}" for kind, times in closed.items())
        + f"; traffic {traffic.sent - before} round trips during the crowd, "
        f"slowest {traffic.slowest:.2f} s"
    )
    print(report)
    assert peak - baseline < PEAK_GROWTH, report
    assert max(after) - baseline < AFTER_GROWTH, report
    assert max(closed["silent"] + closed["trickle"]) < HELLO_TIMEOUT + MARGIN, report
    assert traffic.received == set(range(traffic.sent)), report
    assert traffic.sent - before >= 20, report
    errors = log.read_text()
    assert "Traceback" not in errors, errors
    assert TOKEN not in errors


@pytest.mark.parametrize(("files", "warned"), [((200, 200), True), ((200, 4096), False)])
def test_the_broker_makes_room_for_its_connections(
    tmp_path: Path, files: tuple[int, int], warned: bool
) -> None:
    """With the default max_connections (1000) it needs 1064 open files: it raises its soft
    limit as far as the hard one allows, and says so when that is not enough."""
    proc, log = start(tmp_path, free_port(), files)
    try:
        limits = Path(f"/proc/{proc.pid}/limits").read_text()
        [soft] = [line.split()[3] for line in limits.splitlines() if "open files" in line]
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
    said = log.read_text()
    assert ("may open only 200 files; raise the limit (ulimit -n 1064)" in said) is warned, said
    assert soft == ("200" if warned else "1064")
