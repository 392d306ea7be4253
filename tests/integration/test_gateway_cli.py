"""``seawall gateway`` and a gateway unit of ``seawall up``, as real processes on real sockets."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import httpx
import pytest
from tests.brokers import free_port
from tests.commands import ROOT, Command

from seawall._up.config import parse_up_config
from seawall._up.processes import Up

pytestmark = pytest.mark.slow


def test_seawall_gateway_serves_until_sigterm() -> None:
    port = free_port()
    target = "tests.unit.gateway.served:gateway"
    with Command("gateway", target, "--listen", f"127.0.0.1:{port}") as served:
        served.wait_for(rf"gateway {target} on http://127.0.0.1:{port}", stream="err")
        response = httpx.get(f"http://127.0.0.1:{port}/add/3", params={"b": 4}, timeout=10)
        assert response.json() == {"total": 7}
        assert httpx.get(f"http://127.0.0.1:{port}/openapi.json").json()["info"]["title"] == (
            "served shop"
        )
        served.signal(signal.SIGTERM)
        assert served.wait(timeout=20) == 0, served.text()
        served.wait_for("stopped cleanly", stream="err")


def test_seawall_gateway_names_a_target_that_is_no_gateway() -> None:
    with Command("gateway", "tests.unit.gateway.shop:World", "--listen", "127.0.0.1:1") as bad:
        assert bad.wait(timeout=20) == 1
        bad.wait_for("is a type, not a seawall.gateway.Gateway|not something to run", stream="err")


async def test_a_gateway_unit_of_seawall_up_reaches_a_service_in_another_process(
    tmp_path: Path,
) -> None:
    port = free_port()
    data = {
        "state": str(tmp_path / "state"),
        "grace": 3.0,
        "services": {
            "calc": {"target": "tests.unit.gateway.served:calc"},
            "edge": {"target": "tests.unit.gateway.served:edge", "listen": f"127.0.0.1:{port}"},
        },
    }
    up = Up(parse_up_config(data, where="test.toml", root=ROOT))
    async with up, httpx.AsyncClient(timeout=10) as client:
        await up.wait_ready()
        response = None
        for _ in range(200):  # ready says the system subscribed; uvicorn may bind a moment later
            try:
                response = await client.get(f"http://127.0.0.1:{port}/add/20", params={"b": 22})
                break
            except httpx.ConnectError:
                await asyncio.sleep(0.05)
        assert response is not None
        assert response.json() == {"total": 42}
