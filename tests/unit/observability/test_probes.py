"""/metrics, /healthz and /readyz over real HTTP, following a real system's life."""

from __future__ import annotations

import asyncio
import contextlib
import urllib.error
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from seawall import (
    Command,
    Health,
    MemoryTransport,
    RestartIntensity,
    RetryPolicy,
    Service,
    Subscription,
    SupervisorGaveUp,
    System,
)
from seawall._transport import StartAt
from seawall.observability.http import Probes, Response, parse_listen, respond
from seawall.observability.metrics import Metrics
from seawall.observability.serving import SystemSource
from seawall.testing._delivery import wait_until


class Job(Command, frozen=True):
    n: int


def worker() -> Service:
    svc = Service("worker", retry=RetryPolicy(max_attempts=2, initial_backoff=0.01, jitter=0))

    @svc.command
    async def work(job: Job) -> None:
        if job.n < 0:
            raise ValueError("negative job")

    return svc


class GatedBroker(MemoryTransport):
    """A memory broker whose consumers cannot subscribe until ``gate`` opens."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = asyncio.Event()

    async def subscribe(
        self,
        channel: str,
        *,
        group: str,
        prefetch: int = 64,
        start: StartAt = "earliest",
        idle_expiry: float | None = None,
    ) -> Subscription:
        if not channel.startswith("_inbox"):
            await self.gate.wait()
        return await super().subscribe(
            channel, group=group, prefetch=prefetch, start=start, idle_expiry=idle_expiry
        )


async def get(url: str) -> tuple[int, str]:
    """A real HTTP GET (urllib, in a thread): status and body."""

    def fetch() -> tuple[int, str]:
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as error:
            return error.code, error.read().decode()

    return await asyncio.to_thread(fetch)


async def test_readyz_is_503_until_subscribed_200_while_running_503_after_a_give_up() -> None:
    broker = GatedBroker()
    system = System(worker(), transport=broker, intensity=RestartIntensity(max_restarts=0))
    metrics = Metrics()
    system.use(metrics)
    async with Probes(SystemSource(system, metrics)) as probes:
        starting = asyncio.create_task(system.__aenter__())
        try:
            await wait_until(lambda: len(system.dispatchers) == 1, 5.0, "the consumer to start")
            status, body = await get(f"{probes.url}/readyz")
            assert status == 503
            assert "worker:worker/worker is not subscribed" in body
            assert (await get(f"{probes.url}/healthz"))[0] == 200

            broker.gate.set()
            await starting
            assert await get(f"{probes.url}/readyz") == (
                200,
                '{"live":true,"ready":true,"reasons":[]}\n',
            )

            client = system.context()
            await client.send("worker", Job(n=1))
            await client.send("worker", Job(n=-1))
            await wait_until(
                lambda: system.stats()["worker:worker/worker"].dead_lettered == 1,
                5.0,
                "the dead letter",
            )
            text = (await get(f"{probes.url}/metrics"))[1]
            samples = {
                (s.name, s.labels.get("outcome")): s.value
                for family in text_string_to_metric_families(text)
                for s in family.samples
                if s.labels.get("service") == "worker" or s.name.startswith("seawall_ready")
            }
            assert samples[("seawall_messages_total", "handled")] == 1
            assert samples[("seawall_messages_total", "retried")] == 1
            assert samples[("seawall_messages_total", "dead_lettered")] == 1
            assert samples[("seawall_handler_failures_total", None)] == 2
            assert samples[("seawall_handler_duration_seconds_count", None)] == 3
            assert samples[("seawall_ready", None)] == 1

            broker.disconnect()  # the consumer's link breaks; max_restarts=0: it gives up
            await wait_until(lambda: not system.healthy, 5.0, "the supervisor to give up")
            status, body = await get(f"{probes.url}/readyz")
            assert status == 503
            assert "gave up" in body
            assert (await get(f"{probes.url}/healthz"))[0] == 503
        finally:
            with contextlib.suppress(SupervisorGaveUp):  # the give-up, raised as it leaves
                await system.__aexit__(None, None, None)


class Fixed:
    def __init__(self, health: Health) -> None:
        self._health = health

    def health(self) -> Health:
        return self._health

    def metrics(self) -> tuple[bytes, str]:
        return b"m 1\n", "text/plain"


def test_routes() -> None:
    down = Fixed(Health(live=True, ready=False, reasons=("starting",)))
    assert respond(down, "GET", "/readyz").status == 503
    assert respond(down, "GET", "/healthz").status == 200
    assert respond(down, "GET", "/metrics?x=1") == Response(200, "text/plain", b"m 1\n")
    assert respond(down, "GET", "/").status == 404
    assert respond(down, "POST", "/metrics").status == 405
    assert respond(down, "HEAD", "/metrics").encode(head=True).endswith(b"\r\n\r\n")


def test_listen_addresses() -> None:
    assert parse_listen("127.0.0.1:9464") == ("127.0.0.1", 9464)
    assert parse_listen("[::1]:0") == ("::1", 0)
    for bad in ("9464", "host:", ":80", "h:99999", "h:x"):
        with pytest.raises(ValueError, match="HOST:PORT"):
            parse_listen(bad)


async def test_a_busy_port_is_a_clear_error() -> None:
    async with Probes(Fixed(Health(True, True))) as first:
        with pytest.raises(ValueError, match="choose another --metrics"):
            async with Probes(Fixed(Health(True, True)), port=first.port):
                pass
