"""The gateway's OpenAPI document is valid, and schemathesis, fed it, finds no server error.

The server runs on its own thread and event loop (uvicorn on a free loopback
port, the services in-process over the memory transport), because
schemathesis calls it synchronously from the test's thread.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from openapi_spec_validator import validate
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)
from tests.unit.gateway.shop import (
    Add,
    ConsumerView,
    GetConsumer,
    GetOrder,
    OrderPlaced,
    OrderView,
    PlaceOrder,
    Sum,
    World,
    make_system,
)

from seawall.gateway import Expand, Gateway, serving

pytestmark = pytest.mark.slow


def _gateway() -> Gateway:
    """The routes whose services answer every valid request (none blocks or breaks on purpose)."""
    gateway = Gateway(title="schemathesis shop", version="0.1.0")
    gateway.command(
        "POST", "/orders", channel="orders", payload=PlaceOrder, location="/orders/{order_id}"
    )
    consumer = Expand(
        channel="consumers",
        build=lambda o, _: GetConsumer(consumer_id=o.consumer_id),
        returns=ConsumerView,
    )
    gateway.query(
        "/orders/{order_id}",
        channel="orders",
        payload=GetOrder,
        returns=OrderView,
        errors={"KeyError": 404},
        expand={"consumer": consumer},
        cache=0.5,
    )
    gateway.request("GET", "/add/{a}", channel="calc", payload=Add, returns=Sum)
    gateway.request("POST", "/add", channel="calc", payload=Add, returns=Sum)
    gateway.cloudevents("/events", channel="orders.events", types=(OrderPlaced,))
    return gateway


GATEWAY = _gateway()
DOCUMENT = GATEWAY.openapi()
schema = schemathesis.openapi.from_dict(DOCUMENT)


def test_the_openapi_document_is_valid_openapi_3_1() -> None:
    validate(DOCUMENT)
    assert DOCUMENT["openapi"] == "3.1.0"
    get = DOCUMENT["paths"]["/orders/{order_id}"]["get"]
    assert [p["name"] for p in get["parameters"]] == ["order_id", "expand", "x-request-timeout"]
    assert set(get["responses"]) >= {"200", "404", "422", "502", "503", "504"}
    post = DOCUMENT["paths"]["/orders"]["post"]
    assert post["responses"]["202"]["headers"]["Location"]
    body = post["requestBody"]["content"]["application/json"]["schema"]
    assert body["required"] == ["order_id", "consumer_id", "restaurant_id", "items"]


@pytest.fixture(scope="module")
def base_url() -> Iterator[str]:
    ready: dict[str, Any] = {}
    started = threading.Event()
    stop: asyncio.Event | None = None

    async def serve() -> None:
        nonlocal stop
        stop = asyncio.Event()
        system = make_system(World())
        try:
            async with system, serving(GATEWAY.app(system)) as url:
                ready["url"] = url
                started.set()
                await stop.wait()
        finally:
            started.set()

    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_until_complete, args=(serve(),), daemon=True)
    thread.start()
    started.wait(30)
    assert "url" in ready, "the gateway did not start"
    yield ready["url"]
    assert stop is not None
    loop.call_soon_threadsafe(stop.set)
    thread.join(30)
    loop.close()


@schema.parametrize()
@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
def test_no_generated_request_gets_a_server_error(case: Any, base_url: str) -> None:
    case.call_and_validate(
        base_url=base_url,
        timeout=10,
        checks=[
            not_a_server_error,
            status_code_conformance,
            content_type_conformance,
            response_schema_conformance,
        ],
    )
