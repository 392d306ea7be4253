"""The gateway against a real uvicorn server on a free loopback port, driven with httpx.

The services run in-process over the memory transport (wrapped to count
publishes); every request crosses a real socket, uvicorn and Starlette.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import httpx
import jwt
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from tests.unit.gateway.shop import (
    CountingTransport,
    Work,
    Worked,
    World,
    make_system,
    routes,
    services,
)

from seawall import Context, RetryPolicy, Service, System
from seawall.gateway import ApiKeys, Gateway, JWTAuth, Principal, RateLimit, serving
from seawall.observability import Tracing
from seawall.resilience import BreakerPolicy, CallPolicy, Policies

Client = httpx.AsyncClient


@asynccontextmanager
async def running(
    world: World | None = None, **edge: Any
) -> AsyncIterator[tuple[Client, System, World]]:
    world = world or World()
    system = make_system(world)
    gateway = routes(Gateway(title="test shop", **edge))
    async with (
        system,
        serving(gateway.app(system)) as url,
        httpx.AsyncClient(base_url=url, timeout=10.0) as client,
    ):
        yield client, system, world


async def _place(client: Client, order_id: str = "o-1") -> httpx.Response:
    body = {"order_id": order_id, "consumer_id": "c-7", "restaurant_id": "r-3", "items": ["dal"]}
    return await client.post("/orders", json=body)


async def _until(condition: Callable[[], bool], what: str) -> None:
    for _ in range(500):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"gave up waiting for {what}")


async def test_a_command_is_accepted_with_its_location_and_then_read_back() -> None:
    async with running() as (client, _, world):
        response = await _place(client)
        assert response.status_code == 202
        assert response.headers["location"] == "/orders/o-1"
        assert response.json()["status"] == "accepted"
        await _until(lambda: "o-1" in world.orders, "the order to be placed")
        order = await client.get("/orders/o-1")
        assert order.status_code == 200
        assert order.json() == {
            "order_id": "o-1",
            "consumer_id": "c-7",
            "restaurant_id": "r-3",
            "items": ["dal"],
        }
        assert order.headers["x-correlation-id"]


async def test_expand_makes_its_sub_requests_concurrently() -> None:
    latency = 1.0
    async with running(World(latency=latency)) as (client, _, world):
        await _place(client)
        await _until(lambda: "o-1" in world.orders, "the order to be placed")
        started = time.perf_counter()
        response = await client.get("/orders/o-1", params={"expand": "consumer,restaurant"})
        took = time.perf_counter() - started
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["consumer"] == {"consumer_id": "c-7", "name": "consumer c-7"}
        assert body["restaurant"] == {"restaurant_id": "r-3", "name": "Ajanta"}
        assert body["order_id"] == "o-1"
        # both sub-requests were being handled at the same moment ...
        assert world.most_in_flight == 2
        # ... so the whole took about one latency, not the sum of the two
        assert latency <= took < 2 * latency, took


async def test_an_unknown_expansion_and_a_bad_field_get_422_naming_the_field() -> None:
    async with running() as (client, _, _):
        response = await client.get("/orders/o-1", params={"expand": "courier"})
        assert response.status_code == 422
        assert response.json()["detail"][0]["loc"] == ["query", "expand"]
        response = await client.get("/add/seven")
        assert response.status_code == 422
        assert response.json()["detail"][0]["loc"] == ["path", "a"]
        response = await client.get("/add/7", params={"b": "x"})
        assert response.json()["detail"][0]["loc"] == ["query", "b"]
        bad = {"order_id": "o-2", "consumer_id": "c", "restaurant_id": "r", "items": "dal"}
        response = await client.post("/orders", json=bad)
        assert response.status_code == 422
        assert response.json()["detail"][0]["loc"] == ["body", "items"]
        response = await client.post("/orders", json={"order_id": "o-2"})
        assert response.json()["detail"][0]["loc"] == ["body", "consumer_id"]
        assert (await client.get("/add/7", params={"b": "5"})).json() == {"total": 12}


async def test_a_remote_error_maps_to_the_declared_status() -> None:
    async with running() as (client, _, _):
        response = await client.get("/orders/nope")
        assert response.status_code == 404
        assert response.json()["error_type"] == "KeyError"


def _slow(system: System) -> Any:
    return next(s for name, s in system.stats().items() if name.startswith("slow"))


async def test_past_its_deadline_a_request_gets_504_and_its_work_is_skipped() -> None:
    async with running() as (client, system, world):
        # the slow service works one message at a time: n=0 holds it until released
        first = asyncio.create_task(client.post("/work", json={"n": 0}))
        await asyncio.wait_for(world.holding.wait(), 10)
        late = await client.post("/work", json={"n": 1}, headers={"x-request-timeout": "0.3"})
        assert late.status_code == 504
        assert "deadline" in late.json()["detail"]
        world.release.set()
        assert (await first).status_code == 200
        await _until(lambda: _slow(system).expired == 1, "the late message to expire")
        assert world.worked == [0]  # n=1 was never worked on


async def test_a_bad_timeout_header_is_refused() -> None:
    async with running() as (client, _, _):
        response = await client.post("/work", json={"n": 2}, headers={"x-request-timeout": "-1"})
        assert response.status_code == 422
        assert response.json()["detail"][0]["loc"] == ["header", "x-request-timeout"]


async def test_an_open_breaker_gives_503_with_retry_after_and_nothing_is_published() -> None:
    async with running() as (client, system, _):
        assert isinstance(system.transport, CountingTransport)
        response = await client.post("/fragile", json={"n": 1})
        assert response.status_code == 503
        assert response.headers["retry-after"] == "3"
        assert response.json()["error"] == "CircuitOpen"
        assert system.transport.published.get("fragile", 0) == 0
        assert (await client.post("/work", json={"n": 5})).status_code == 200
        assert system.transport.published["slow"] == 1  # the counter does count


async def test_the_timeout_header_is_the_requests_deadline_also_past_the_default() -> None:
    """A caller may ask for longer than a request's default 30 s: the service sees it."""
    timed = Service("timed")

    @timed.command
    async def remaining(cmd: Work, ctx: Context) -> Worked:
        assert ctx.deadline is not None
        return Worked(n=round(ctx.deadline - time.time()))

    gateway = Gateway(title="timed edge", max_timeout=120.0)
    gateway.request("POST", "/timed", channel="timed", payload=Work, returns=Worked)
    async with (
        System(timed, transport=CountingTransport()) as system,
        serving(gateway.app(system)) as url,
        httpx.AsyncClient(base_url=url, timeout=10.0) as client,
    ):
        response = await client.post("/timed", json={"n": 1}, headers={"x-request-timeout": "90"})
        assert response.status_code == 200
        assert 80 <= response.json()["n"] <= 90


async def test_the_systems_own_breaker_opens_and_then_gives_503_without_a_publish() -> None:
    """The real breaker of seawall.resilience, not a stand-in: two failures open it."""
    flaky = Service("flaky", retry=RetryPolicy(max_attempts=1))

    @flaky.command
    async def fail(cmd: Work) -> Worked:
        raise RuntimeError(f"downstream is down for {cmd.n}")

    breaker = BreakerPolicy(window=2, minimum_calls=2, open_for=30.0, trials=1)
    policies = Policies(targets={"flaky": CallPolicy(breaker=breaker)})
    transport = CountingTransport()
    gateway = Gateway(title="flaky edge")
    gateway.request("POST", "/flaky", channel="flaky", payload=Work, returns=Worked)
    async with (
        System(flaky, transport=transport, policies=policies) as system,
        serving(gateway.app(system)) as url,
        httpx.AsyncClient(base_url=url, timeout=10.0) as client,
    ):
        failed = [(await client.post("/flaky", json={"n": n})).status_code for n in (1, 2)]
        assert failed == [502, 502]
        assert transport.published["flaky"] == 2
        response = await client.post("/flaky", json={"n": 3})
        assert response.status_code == 503
        assert response.json()["error"] == "CircuitOpen"
        assert 1 <= int(response.headers["retry-after"]) <= 30
        assert transport.published["flaky"] == 2  # refused before anything was sent


async def test_api_keys_refuse_a_wrong_key_and_scopes_refuse_a_missing_scope() -> None:
    keys = ApiKeys({"k-good": Principal("alice", frozenset({"orders"})), "k-weak": "bob"})
    async with running(auth=keys) as (client, _, _):
        assert (await client.get("/add/1", headers={"x-api-key": "k-good"})).status_code == 200
        assert (await client.get("/add/1")).status_code == 200  # anonymous, no scopes asked
        wrong = await client.get("/add/1", headers={"x-api-key": "k-bad"})
        assert wrong.status_code == 401
        assert wrong.headers["www-authenticate"] == "ApiKey"


async def test_a_route_with_scopes_refuses_nobody_with_401_and_a_lacking_scope_with_403() -> None:
    keys = ApiKeys({"k-calc": Principal("alice", frozenset({"calc"})), "k-none": "bob"})
    async with running(auth=keys) as (client, _, _):
        body = {"a": 1, "b": 2}
        assert (await client.post("/add", json=body)).status_code == 401
        lacking = await client.post("/add", json=body, headers={"x-api-key": "k-none"})
        assert lacking.status_code == 403
        assert "lacks the scope(s) calc" in lacking.json()["detail"]
        allowed = await client.post("/add", json=body, headers={"x-api-key": "k-calc"})
        assert allowed.json() == {"total": 3}


async def test_jwt_bearer_tokens_are_verified() -> None:
    secret = "s3cret-that-is-long-enough-for-hs256!"
    auth = JWTAuth(secret, audience="shop")
    async with running(auth=auth) as (client, _, _):
        good = jwt.encode({"sub": "carol", "aud": "shop"}, secret, algorithm="HS256")
        forged = jwt.encode(
            {"sub": "carol", "aud": "shop"}, "another-key-that-is-long-enough-for-it", "HS256"
        )
        other = jwt.encode({"sub": "carol", "aud": "elsewhere"}, secret, algorithm="HS256")
        ok = await client.get("/add/2", headers={"authorization": f"Bearer {good}"})
        assert ok.status_code == 200
        for token in (forged, other, "not-a-jwt"):
            refused = await client.get("/add/2", headers={"authorization": f"Bearer {token}"})
            assert refused.status_code == 401, token
            assert refused.headers["www-authenticate"] == "Bearer"


async def test_the_rate_limit_refuses_past_the_burst_per_key() -> None:
    keys = ApiKeys({"k-a": "alice", "k-b": "bob"})
    async with running(auth=keys, rate_limit=RateLimit(rate=0.01, burst=3)) as (client, _, _):
        alice = {"x-api-key": "k-a"}
        codes = [(await client.get("/add/1", headers=alice)).status_code for _ in range(5)]
        assert codes == [200, 200, 200, 429, 429]
        refused = await client.get("/add/1", headers=alice)
        assert int(refused.headers["retry-after"]) >= 1
        assert (await client.get("/add/1", headers={"x-api-key": "k-b"})).status_code == 200


async def test_a_cached_read_is_answered_without_a_second_request() -> None:
    async with running() as (client, _, world):
        await _place(client)
        await _until(lambda: "o-1" in world.orders, "the order to be placed")
        first = await client.get("/orders/o-1")
        second = await client.get("/orders/o-1")
        assert (first.headers["x-cache"], second.headers["x-cache"]) == ("miss", "hit")
        assert first.json() == second.json()
        assert world.reads == 1


async def test_sse_delivers_a_keys_events_in_order() -> None:
    async with running() as (client, _, _):
        async with client.stream("GET", "/orders/o-9/events") as stream:
            assert stream.headers["content-type"].startswith("text/event-stream")
            await _place(client, "o-8")  # another key: not on this stream
            await _place(client, "o-9")
            events: list[tuple[str, str]] = []
            event = ""
            async for line in stream.aiter_lines():
                if line.startswith("event: "):
                    event = line[7:]
                elif line.startswith("data: "):
                    events.append((event, line[6:]))
                if len(events) == 3:
                    break
        assert [e for e, _ in events] == ["orders.OrderPlaced"] * 3
        assert [d for _, d in events] == [f'{{"order_id":"o-9","step":{n}}}' for n in (1, 2, 3)]


async def test_cloudevents_in_binary_and_structured_mode_are_published() -> None:
    async with running() as (client, _system, _):
        async with client.stream("GET", "/orders/o-5/events") as stream:
            binary = {
                "ce-specversion": "1.0",
                "ce-id": "ev-1",
                "ce-source": "/partner",
                "ce-type": "orders.OrderPlaced",
                "content-type": "application/json",
            }
            response = await client.post(
                "/events", content=b'{"order_id":"o-5","step":1}', headers=binary
            )
            assert response.status_code == 202, response.text
            structured = {
                "specversion": "1.0",
                "id": "ev-2",
                "source": "/partner",
                "type": "orders.OrderPlaced",
                "data": {"order_id": "o-5", "step": 2},
            }
            response = await client.post(
                "/events",
                json=structured,
                headers={"content-type": "application/cloudevents+json"},
            )
            assert response.status_code == 202, response.text
            ids = []
            async for line in stream.aiter_lines():
                if line.startswith("id: "):
                    ids.append(line[4:])
                if len(ids) == 2:
                    break
        assert ids == ["ev-1", "ev-2"]
        wrong = dict(binary, **{"ce-type": "orders.Nope"})
        response = await client.post("/events", content=b"{}", headers=wrong)
        assert response.status_code == 422
        response = await client.post("/events", content=b"{}")
        assert response.status_code == 422


async def test_cors_answers_a_preflight_for_an_allowed_origin() -> None:
    async with running(cors_origins=["https://shop.example"]) as (client, _, _):
        response = await client.options(
            "/add/1",
            headers={
                "origin": "https://shop.example",
                "access-control-request-method": "GET",
            },
        )
        assert response.status_code == 200
        assert response.headers["access-control-allow-origin"] == "https://shop.example"
        other = await client.options(
            "/add/1",
            headers={"origin": "https://evil.example", "access-control-request-method": "GET"},
        )
        assert other.status_code == 400


async def test_openapi_json_and_docs_are_served_locally() -> None:
    async with running() as (client, _, _):
        doc = (await client.get("/openapi.json")).json()
        assert doc["openapi"] == "3.1.0"
        assert "/orders/{order_id}" in doc["paths"]
        docs = await client.get("/docs")
        assert docs.status_code == 200
        assert "/openapi.json" in docs.text


async def test_a_trace_starts_at_the_gateway_and_continues_through_the_services() -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    world = World()
    system = System(
        *services(world), transport="memory://", middleware=[Tracing(tracer_provider=provider)]
    )
    gateway = routes(Gateway(tracer_provider=provider))
    upstream = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    async with (
        system,
        serving(gateway.app(system)) as url,
        httpx.AsyncClient(base_url=url) as client,
    ):
        response = await client.get("/add/4", headers={"traceparent": upstream})
        assert response.status_code == 200
    spans = {s.name: s for s in exporter.get_finished_spans()}
    server = spans["GET /add/{a}"]
    assert server.kind is SpanKind.SERVER
    assert server.parent is not None
    assert server.parent.span_id == 0xB7AD6B7169203331
    assert server.attributes is not None
    assert server.attributes["http.response.status_code"] == 200
    consumer = spans["process calc"]
    trace_id = 0x0AF7651916CD43DD8448EB211C80319C
    assert {s.context.trace_id for s in spans.values()} == {trace_id}
    # the chain: server span -> the request's producer span -> the handler's consumer span
    producer = next(
        s for s in spans.values() if s.kind is SpanKind.PRODUCER and s.name == "request calc"
    )
    assert producer.parent is not None
    assert producer.parent.span_id == server.context.span_id
    assert consumer.parent is not None
    assert consumer.parent.span_id == producer.context.span_id
