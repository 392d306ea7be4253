"""``seawall up --metrics``: one scrape shows every child's counts, and a restart loses none."""

from __future__ import annotations

import asyncio
import os
import signal
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families
from tests.apps.up_app import Ping, Pong

from seawall import System
from seawall._up.config import parse_up_config
from seawall._up.metrics import UpSource
from seawall._up.processes import Up
from seawall.observability.http import Probes

ROOT = Path(__file__).resolve().parents[3]

pytestmark = pytest.mark.integration


async def scrape(url: str) -> dict[tuple[str, str], float]:
    """(process, outcome) -> seawall_messages_total, over a real HTTP GET."""

    def get() -> str:
        with urllib.request.urlopen(url, timeout=5) as response:
            return str(response.read().decode())

    text = await asyncio.to_thread(get)
    return {
        (s.labels["process"], s.labels["outcome"]): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == "seawall_messages_total"
    }


async def settled(up: Up, want: int) -> None:
    for _ in range(500):
        if sum(i.total("handled") for i in up.refresh()) >= want:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"the reports never counted {want} handled")


async def test_a_scrape_counts_what_the_services_report_across_a_restart(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("UP_TEST_OUT", "/dev/null")
    data = {
        "state": str(tmp_path / "state"),
        "grace": 2.0,
        "restart": {"initial_backoff": 0.05},
        "services": {"echo": {"target": "tests.apps.up_app:echo", "instances": 2}},
    }
    up = Up(parse_up_config(data, where="test.toml", root=ROOT), metrics=True)
    async with Probes(UpSource(up)) as probes, up:
        await up.wait_ready()
        async with System(transport=up.transport_url) as client:
            for n in range(10):
                await client.context().request("echo", Ping(n=n), returns=Pong, timeout=5)
            await settled(up, 10)
            before = await scrape(f"{probes.url}/metrics")
            assert sum(v for (_, outcome), v in before.items() if outcome == "handled") == 10

            victim = up.instances[0]
            assert victim.pid is not None
            os.kill(victim.pid, signal.SIGKILL)
            await up.wait_ready()
            for n in range(4):
                await client.context().request("echo", Ping(n=n), returns=Pong, timeout=10)
            await settled(up, 14)
            after = await scrape(f"{probes.url}/metrics")
    handled = {p: v for (p, outcome), v in after.items() if outcome == "handled"}
    assert sum(handled.values()) == 14 == sum(i.total("handled") for i in up.instances)
    assert handled[victim.name] >= before.get((victim.name, "handled"), 0)  # never goes back
