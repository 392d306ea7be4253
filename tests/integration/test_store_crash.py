"""Crash safety of the store: kill -9 a real appending process, reopen, count losses."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from tests.apps.store_appender import CHANNEL, body_for

from seawall._broker.store import Store

ROUNDS = 5
ROOT = Path(__file__).resolve().parents[2]


def run_and_kill(path: Path, policy: str, rng: random.Random) -> list[int]:
    """Start an appender, SIGKILL it at a random moment; the offsets it acknowledged."""
    with subprocess.Popen(
        [sys.executable, "-m", "tests.apps.store_appender", str(path), policy],
        cwd=ROOT,
        stdout=subprocess.PIPE,
    ) as child:
        assert child.stdout is not None
        try:
            first = child.stdout.readline()  # acknowledgements have begun
            assert first, "the appender exited before acknowledging anything"
            time.sleep(rng.uniform(0.0, 0.3))
        finally:
            os.kill(child.pid, signal.SIGKILL)
        rest = child.stdout.read()
    lines = (first + rest).split(b"\n")
    return [int(line) for line in lines[:-1]]  # a last line without newline is no ack


@pytest.mark.parametrize("policy", ["always", "batch"])
def test_kill_9_loses_no_acknowledged_append(tmp_path: Path, policy: str) -> None:
    rng = random.Random(policy)
    acknowledged: list[int] = []
    for _ in range(ROUNDS):
        acknowledged += run_and_kill(tmp_path, policy, rng)
        with Store.open(tmp_path) as store:
            bounds = store.recover().logs[(CHANNEL, 0)]
            entries = store.read(CHANNEL, 0, 0, bounds.end + 1)
        offsets = [entry.offset for entry in entries]
        assert offsets == list(range(bounds.end)), "offsets are not dense"
        assert all(entry.body == body_for(entry.offset) for entry in entries)
        lost = [offset for offset in acknowledged if offset >= bounds.end]
        assert lost == []
    assert len(acknowledged) > ROUNDS * 256  # every round got past its first window
