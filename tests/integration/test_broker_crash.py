"""kill -9 the process holding the embedded broker, again and again, and lose nothing.

Each round starts ``tests/apps/crash_child.py`` on the same data directory; it
publishes and consumes at once and prints what was acknowledged (``P n``) and
delivered (``C n``). The test kills it with SIGKILL at a random moment after
some publishes were acknowledged. A last clean run consumes what is left. Every
acknowledged publish must have been delivered at least once; duplicates (a
delivery whose ack was not yet recorded when the process died) are counted.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from tests.broker_process import start_broker, stop
from tests.brokers import free_port

ROOT = Path(__file__).resolve().parents[2]
ROUNDS = 4


@dataclass
class Ledger:
    """What the children reported, over every round."""

    acked: set[int] = field(default_factory=set)
    delivered: Counter[int] = field(default_factory=Counter)

    def read(self, output: str) -> None:
        for line in output.splitlines():
            kind, _, number = line.partition(" ")
            if kind == "P":
                self.acked.add(int(number))
            elif kind == "C":
                self.delivered[int(number)] += 1

    @property
    def lost(self) -> set[int]:
        return self.acked - set(self.delivered)

    @property
    def duplicates(self) -> int:
        return sum(n - 1 for n in self.delivered.values())


def child(url: str, first: int, count: int, *idle: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src") + os.pathsep + str(ROOT)}
    return subprocess.Popen(
        [sys.executable, "-m", "tests.apps.crash_child", url, str(first), str(count), *idle],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def kill_after_acks(
    proc: subprocess.Popen[str],
    acks: int,
    rng: random.Random,
    victim: subprocess.Popen[str] | None = None,
) -> str:
    """Read until ``acks`` publishes were acknowledged plus a random moment, then SIGKILL.

    The broker dies: ``proc`` itself when it holds the broker, else ``victim`` (the
    broker server) first and then ``proc``, its client.
    """
    assert proc.stdout is not None
    lines: list[str] = []
    seen = 0
    deadline = time.monotonic() + 20
    extra = rng.randint(0, acks)
    while seen < acks + extra and time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line)
        seen += line.startswith("P ")
    if victim is not None:
        stop(victim, signal.SIGKILL)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    # read through proc.stdout: communicate() would read the pipe beneath its buffer
    # and miss lines the buffer already holds
    assert proc.stderr is not None
    with proc.stdout, proc.stderr:
        rest, err = proc.stdout.read(), proc.stderr.read()
    assert seen >= acks, f"child acknowledged only {seen} publishes before dying:\n{err}"
    return "".join(lines) + rest


@pytest.mark.parametrize("sync", ["always", "batch"])
def test_kill_9_loses_no_acknowledged_message(tmp_path: Path, sync: str) -> None:
    url = f"embedded://{tmp_path / 'data'}?sync={sync}"
    rng = random.Random(sync)
    ledger = Ledger()
    for round_ in range(ROUNDS):
        proc = child(url, round_ * 1_000_000, 100_000)
        ledger.read(kill_after_acks(proc, 300, rng))
    ledger.read(drain(url))
    check(ledger, sync)


@pytest.mark.parametrize("sync", ["always", "batch"])
def test_kill_9_of_the_broker_server_loses_no_acknowledged_message(
    tmp_path: Path, sync: str
) -> None:
    """The same, with the broker in its own process (``seawall broker``) killed under a client."""
    data = tmp_path / "data"
    port = free_port()
    url = f"seawall://127.0.0.1:{port}"
    rng = random.Random(f"server-{sync}")
    ledger = Ledger()
    for round_ in range(ROUNDS):
        server = start_broker(data, port, "--sync", sync)
        client = child(url, round_ * 1_000_000, 100_000)
        ledger.read(kill_after_acks(client, 300, rng, victim=server))
    server = start_broker(data, port, "--sync", sync)
    try:
        ledger.read(drain(url))
    finally:
        stop(server, signal.SIGTERM)
    check(ledger, sync)


def drain(url: str) -> str:
    """What a last clean run consumes once nothing new comes for a second."""
    final = child(url, 0, 0, "1.0")
    out, err = final.communicate(timeout=30)
    assert final.returncode == 0, err
    return out


def check(ledger: Ledger, sync: str) -> None:
    assert len(ledger.acked) >= ROUNDS * 300
    assert ledger.lost == set(), f"lost {len(ledger.lost)} acknowledged messages"
    print(f"sync={sync}: acked {len(ledger.acked)}, lost 0, duplicates {ledger.duplicates}")
