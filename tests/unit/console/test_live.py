"""The console over the memory transport: topology from heartbeats, dead letters live,
and redrive or purge over HTTP only with the operator token."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

import httpx
import pytest

from seawall import (
    Command,
    MemoryTransport,
    RetryPolicy,
    Service,
    System,
    Transport,
)
from seawall.console.live import Console
from seawall.console.web import app
from seawall.discovery import REGISTRY_CHANNEL, Announcement, Handles
from seawall.discovery.channel import encode


class Charge(Command, frozen=True):
    type_name = "console_test.Charge"

    n: int


async def announce(transport: Transport, service: str, channel: str) -> None:
    beat = Announcement(
        service=service,
        instance=f"{service}-1",
        handles=(Handles(channel=channel, group=service),),
    )
    await transport.publish(REGISTRY_CHANNEL, encode(beat, time.time()))


async def until(check: Callable[[], bool], seconds: float = 10.0) -> None:
    async with asyncio.timeout(seconds):
        while not check():  # noqa: ASYNC110
            await asyncio.sleep(0.02)


def client(console: Console) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app(console)), base_url="http://c")


def payment_service(broken: set[int], handled: list[int]) -> Service:
    service = Service("pay")

    @service.subscribe("pay", retry=RetryPolicy(max_attempts=1))
    async def charge(cmd: Charge) -> None:
        if cmd.n in broken:
            raise ValueError(f"card {cmd.n} is not set up yet")
        handled.append(cmd.n)

    return service


async def test_the_page_state_has_the_topology_and_the_dead_letter_and_redrive_needs_the_token(
    caplog: pytest.LogCaptureFixture,
) -> None:
    transport = MemoryTransport()
    broken, handled = {1}, []
    async with (
        System(payment_service(broken, handled), transport=transport) as system,
        Console(transport, token="s3cret") as console,
        client(console) as http,
    ):
        await announce(transport, "pay", "pay")
        await system.context().send("pay", Charge(n=1))
        await until(lambda: len(console.state()["dead_letters"]) == 1)
        state = (await http.get("/api/state")).json()
        assert [s["name"] for s in state["topology"]["services"]] == ["pay"]
        assert [c["name"] for c in state["topology"]["channels"]] == ["pay"]
        [letter] = state["dead_letters"]
        assert letter["reason"] == "handler-error"
        assert letter["body"] == {"n": 1}
        assert state["operator"] is True

        ask = {"dlq": "pay.dlq", "keys": [letter["key"]]}
        with caplog.at_level(logging.WARNING, logger="seawall.console"):
            missing = await http.post("/api/dlq/redrive", json=ask)
            wrong = await http.post(
                "/api/dlq/redrive", json=ask, headers={"X-Seawall-Token": "guess"}
            )
        assert (missing.status_code, wrong.status_code) == (401, 401)
        assert "needs the operator token" in missing.json()["error"]
        assert sum("redrive refused" in r.getMessage() for r in caplog.records) == 2
        assert len(console.state()["dead_letters"]) == 1
        assert handled == []

        broken.clear()
        token = {"X-Seawall-Token": "s3cret"}
        done = await http.post("/api/dlq/redrive", json=ask, headers=token)
        again = await http.post("/api/dlq/redrive", json=ask, headers=token)
        assert done.json() == {"done": [letter["key"]]}
        assert again.json() == {"done": []}
        await until(lambda: handled == [1])
        await asyncio.sleep(0.1)
        assert handled == [1]
        assert console.state()["dead_letters"] == []


async def test_a_console_without_a_token_is_read_only() -> None:
    transport = MemoryTransport()
    broken, handled = {1}, []
    async with (
        System(payment_service(broken, handled), transport=transport) as system,
        Console(transport, dlqs=["pay"]) as console,
        client(console) as http,
    ):
        await system.context().send("pay", Charge(n=1))
        await until(lambda: len(console.state()["dead_letters"]) == 1)
        key = console.state()["dead_letters"][0]["key"]
        for action in ("redrive", "purge"):
            answer = await http.post(
                f"/api/dlq/{action}",
                json={"dlq": "pay.dlq", "keys": [key]},
                headers={"X-Seawall-Token": "anything"},
            )
            assert answer.status_code == 403
            assert "read-only" in answer.json()["error"]
        assert len(console.state()["dead_letters"]) == 1
        page = await http.get("/")
        assert page.status_code == 200
        assert "seawall console" in page.text
        script = await http.get("/static/console.js")
        assert script.status_code == 200
        assert "EventSource" in script.text
