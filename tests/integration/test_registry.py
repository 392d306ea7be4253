"""The registry across real processes: ``seawall ps``, who calls whom, and a SIGKILLed instance.

A service runs in its own process (``seawall run``) on a broker server; ``seawall
ps`` lists it with its pid and message versions; after kill -9 it is gone from
what ``seawall ps`` says within 3 s, since nothing beats for it any more.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.apps.registry_app import Forward, ledger, relay
from tests.broker_process import start_broker, stop
from tests.brokers import free_port

from seawall import System
from seawall._cli.ps import listen

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[str]:
    port = free_port()
    proc = start_broker(tmp_path / "broker", port)
    try:
        yield f"seawall://127.0.0.1:{port}"
    finally:
        stop(proc, signal.SIGTERM)


def seawall(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    environment = {**os.environ, "PYTHONPATH": f"{ROOT / 'src'}:{ROOT}", **(env or {})}
    return subprocess.Popen(
        [sys.executable, "-m", "seawall", *args],
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def ps(*args: str) -> str:
    done = seawall("ps", *args)
    out, err = done.communicate(timeout=30)
    assert done.returncode == 0, err
    return out


@contextlib.contextmanager
def service(broker: str) -> Iterator[subprocess.Popen[str]]:
    """A ``seawall run`` of the ledger on ``broker``, once it runs; SIGKILLed after."""
    child = seawall("run", "tests.apps.registry_app:ledger", "--transport", broker)
    assert child.stdout is not None
    assert child.stderr is not None
    try:
        assert "running" in child.stderr.readline()
        yield child
    finally:
        if child.poll() is None:
            child.kill()
        child.wait()
        child.stdout.close()
        child.stderr.close()


@pytest.mark.slow
def test_seawall_ps_lists_an_instance_and_forgets_it_within_3_s_of_kill_9(broker: str) -> None:
    assert "no live service instances" in ps("--transport", broker)
    with service(broker) as child:
        table = ps("--transport", broker)
        assert "SERVICE" in table
        assert "P99" in table
        assert f"/{child.pid}" in table
        (row,) = [
            r for r in json.loads(ps("--json", "--transport", broker)) if r["pid"] == child.pid
        ]
        assert row["service"] == "ledger"
        assert row["handles"][0]["channel"] == "ledger"
        assert row["handles"][0]["types"] == ["Record@1.0.0"]
        killed = time.monotonic()
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=10)
        # listening from 1.6 s to 3.0 s after the kill, ps answers as of 3 s after it
        time.sleep(max(0.0, killed + 3.0 - 1.4 - time.monotonic()))
        live = asyncio.run(listen(broker, 1.4))
        assert time.monotonic() - killed < 3.5, "the machine is too slow for this check"
        assert [a.pid for a in live if a.pid == child.pid] == []


@pytest.mark.slow
async def test_seawall_ps_shows_who_calls_whom(broker: str) -> None:
    async with System(relay(), ledger(), transport=broker) as system:
        await system.context().send("relay", Forward(id="f-1"))
        for _ in range(500):  # the relay has sent on once the ledger handled it
            if sum(d.stats.handled for d in system.dispatchers if d.service == "ledger"):
                break
            await asyncio.sleep(0.01)
        table = await asyncio.to_thread(ps, "--transport", broker)
        assert "CALLS" in table
        assert "relay -> ledger" in table
        rows = json.loads(await asyncio.to_thread(ps, "--json", "--transport", broker))
        assert {r["service"]: r["sends_to"] for r in rows} == {"relay": ["ledger"], "ledger": []}
