"""Interop proof: seawall headers against the CloudEvents Python SDK (2.x, HTTP binding).

A seawall message written with :func:`to_headers` must be read by the SDK in
binary content mode, and an event the SDK writes must be read by
:func:`from_headers` and decoded into a seawall payload class.

The HTTP binding percent-encodes header values outside printable ASCII (and
space, ``"`` and ``%``); seawall does so with ``percent_encoded=True``, which
the HTTP edge uses. The property tests keep to values that need no encoding.
"""

from __future__ import annotations

import string
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from cloudevents.core.bindings.http import HTTPMessage, from_http_event, to_binary_event
from cloudevents.core.v1.event import CloudEvent
from hypothesis import given, settings
from hypothesis import strategies as st

from seawall import JSON, Command, Message, TypeRegistry, from_headers, to_headers, uuid7
from seawall._messages.codec import codec_for
from seawall._messages.payload import schema_uri


class CreateOrder(Command):
    type_name = "com.example.orders.CreateOrder"
    type_version = "1.4.0"

    order_id: str
    total: int
    lines: list[str]


_ORDER = CreateOrder(order_id="o-42", total=1999, lines=["sku-1", "sku-2"])
_ORDER_JSON = {"order_id": "o-42", "total": 1999, "lines": ["sku-1", "sku-2"]}
_EXTENSIONS = (
    "kind",
    "correlationid",
    "causationid",
    "replyto",
    "partitionkey",
    "traceparent",
    "tracestate",
)


def _sdk_reads(headers: dict[str, str], body: bytes) -> CloudEvent:
    event = from_http_event(HTTPMessage(headers=headers, body=body))
    assert isinstance(event, CloudEvent)
    return event


def _order_message(**changes: Any) -> Message:
    attrs: dict[str, Any] = {
        "id": uuid7(),
        "type": CreateOrder.type_name,
        "source": "https://shop.example/checkout",
        "subject": "order-42",
        "time": datetime(2026, 1, 31, 12, 0, 0, 123456, tzinfo=UTC),
        "data": JSON.encode(_ORDER),
        "kind": "command",
        "dataschema": schema_uri(CreateOrder),
        "correlationid": "c-7",
        "causationid": "m-6",
        "replyto": "checkout.replies",
        "partitionkey": "customer-9",
        "deadline": datetime(2026, 1, 31, 12, 0, 5, tzinfo=UTC),
        "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        "tracestate": "congo=t61rcWkgMzE",
    }
    return Message(**(attrs | changes))


# --- seawall -> SDK -----------------------------------------------------------------------


def test_sdk_reads_a_seawall_message_in_binary_mode() -> None:
    message = _order_message()
    event = _sdk_reads(to_headers(message), message.data)

    assert event.get_specversion() == "1.0"
    assert event.get_id() == message.id
    assert event.get_type() == "com.example.orders.CreateOrder"
    assert event.get_source() == "https://shop.example/checkout"
    assert event.get_subject() == "order-42"
    assert event.get_time() == datetime(2026, 1, 31, 12, 0, 0, 123456, tzinfo=UTC)
    assert event.get_datacontenttype() == "application/json"
    assert event.get_dataschema() == "urn:seawall:com.example.orders.CreateOrder:1.4.0"
    assert event.get_data() == _ORDER_JSON


def test_sdk_sees_seawall_extensions() -> None:
    message = _order_message()
    event = _sdk_reads(to_headers(message), message.data)

    for name in _EXTENSIONS:
        assert event.get_extension(name) == getattr(message, name), name
    assert event.get_extension("deadline") == "2026-01-31T12:00:05Z"


def test_sdk_ignores_headers_seawall_passes_through() -> None:
    message = _order_message(headers={"x-request-id": "r-1"})
    event = _sdk_reads(to_headers(message), message.data)
    assert event.get_extension("x-request-id") is None
    assert event.get_id() == message.id


def test_sdk_reads_a_message_with_only_required_attributes() -> None:
    message = Message(id="m-1", type="t.Ping", source="/ping", data=b"{}")
    event = _sdk_reads(to_headers(message), message.data)
    assert (event.get_id(), event.get_type(), event.get_source()) == ("m-1", "t.Ping", "/ping")
    assert event.get_subject() is None
    assert event.get_data() == {}


# values the HTTP binding carries without percent-encoding
_plain = st.text(
    alphabet=st.sampled_from([c for c in string.printable if "!" <= c <= "~" and c not in '"%']),
    min_size=1,
    max_size=20,
)


@settings(max_examples=100, deadline=None)
@given(
    id=_plain,
    type=_plain,
    source=_plain,
    subject=st.none() | _plain,
    time=st.none() | st.datetimes(timezones=st.just(UTC)),
    kind=st.sampled_from(["command", "event", "document"]),
    correlationid=st.none() | _plain,
    partitionkey=st.none() | _plain,
)
def test_sdk_reads_any_message_with_plain_header_values(**attrs: Any) -> None:
    message = Message(data=JSON.encode(_ORDER), **attrs)
    event = _sdk_reads(to_headers(message), message.data)

    assert event.get_id() == message.id
    assert event.get_type() == message.type
    assert event.get_source() == message.source
    assert event.get_subject() == message.subject
    if message.time is not None:  # the SDK stamps "now" on events without a time
        assert event.get_time() == message.time
    for name in ("kind", "correlationid", "partitionkey"):
        assert event.get_extension(name) == getattr(message, name)
    assert event.get_data() == _ORDER_JSON


def test_sdk_reads_header_values_that_need_percent_encoding() -> None:
    # a literal "%20" in a file name: the SDK percent-decodes it into a space
    message = _order_message(subject="invoices/Q1%202026.pdf")
    event = _sdk_reads(to_headers(message, percent_encoded=True), message.data)
    assert event.get_subject() == "invoices/Q1%202026.pdf"


# --- SDK -> seawall -----------------------------------------------------------------------


def _sdk_order_event(**changes: Any) -> CloudEvent:
    attributes: dict[str, Any] = {
        "id": "sdk-1",
        "type": CreateOrder.type_name,
        "source": "https://partner.example/orders",
        "subject": "order-42",
        "time": datetime(2026, 1, 31, 12, 0, 0, 500000, tzinfo=UTC),
        "datacontenttype": "application/json",
        "dataschema": "urn:seawall:com.example.orders.CreateOrder:1.2.0",
        "kind": "command",
        "correlationid": "c-7",
    }
    return CloudEvent(attributes | changes, _ORDER_JSON)


def test_seawall_reads_an_sdk_event_in_binary_mode() -> None:
    http = to_binary_event(_sdk_order_event())
    message = from_headers(http.headers, http.body)

    assert message.id == "sdk-1"
    assert message.type == "com.example.orders.CreateOrder"
    assert message.source == "https://partner.example/orders"
    assert message.subject == "order-42"
    assert message.time == datetime(2026, 1, 31, 12, 0, 0, 500000, tzinfo=UTC)
    assert message.datacontenttype == "application/json"
    assert message.dataschema == "urn:seawall:com.example.orders.CreateOrder:1.2.0"
    assert message.kind == "command"
    assert message.correlationid == "c-7"
    assert message.headers == {}


def test_sdk_event_data_decodes_into_the_registered_command() -> None:
    registry = TypeRegistry()
    registry.register(CreateOrder)
    http = to_binary_event(_sdk_order_event())
    message = from_headers(http.headers, http.body)

    cls = registry.resolve(message.type, message.dataschema)
    payload = codec_for(message.datacontenttype).decode(message.data, cls)

    assert cls is CreateOrder
    assert payload == _ORDER


def test_sdk_event_without_seawall_extensions_takes_the_defaults() -> None:
    event = CloudEvent(
        {"type": CreateOrder.type_name, "source": "/partner", "id": "sdk-2"}, _ORDER_JSON
    )
    http = to_binary_event(event)
    message = from_headers(http.headers, http.body)

    assert (message.kind, message.datacontenttype, message.dataschema) == (
        "event",
        "application/json",
        None,
    )
    assert message.time == event.get_time()
    assert JSON.decode(message.data, CreateOrder) == _ORDER


def test_unknown_sdk_extensions_are_kept_as_headers() -> None:
    http = to_binary_event(_sdk_order_event(tenant="acme", region="eu1"))
    message = from_headers(http.headers, http.body)
    assert message.headers == {"ce-tenant": "acme", "ce-region": "eu1"}
    assert to_headers(message)["ce-tenant"] == "acme"


def test_sdk_time_with_an_offset_is_the_same_instant() -> None:
    plus_two = timezone(timedelta(hours=2))
    http = to_binary_event(_sdk_order_event(time=datetime(2026, 1, 31, 14, 0, tzinfo=plus_two)))
    message = from_headers(http.headers, http.body)
    assert message.time == datetime(2026, 1, 31, 12, 0, tzinfo=UTC)


def test_header_names_the_sdk_upper_cases_are_read() -> None:
    http = to_binary_event(_sdk_order_event())
    message = from_headers({name.title(): value for name, value in http.headers.items()}, http.body)
    assert (message.id, message.kind, message.datacontenttype) == (
        "sdk-1",
        "command",
        "application/json",
    )


@settings(max_examples=100, deadline=None)
@given(
    id=_plain,
    source=_plain,
    subject=_plain,
    time=st.datetimes(timezones=st.just(UTC)),
    partitionkey=_plain,
)
def test_seawall_reads_any_sdk_event_with_plain_header_values(**attrs: Any) -> None:
    event = CloudEvent({"type": CreateOrder.type_name, **attrs}, _ORDER_JSON)
    http = to_binary_event(event)
    message = from_headers(http.headers, http.body)

    for name, value in attrs.items():
        assert getattr(message, name) == value, name
    assert JSON.decode(message.data, CreateOrder) == _ORDER


def test_seawall_reads_sdk_header_values_that_need_percent_encoding() -> None:
    http = to_binary_event(_sdk_order_event(subject="order 42 for Zoë"))
    message = from_headers(http.headers, http.body, percent_encoded=True)
    assert message.subject == "order 42 for Zoë"


# --- SDK event handled by a running seawall service --------------------------------------


async def test_a_handler_accepts_an_event_built_by_the_sdk() -> None:
    from seawall import Service
    from seawall.testing import TestSystem

    orders = Service("orders")
    handled: list[CreateOrder] = []

    @orders.command
    async def create(cmd: CreateOrder) -> None:
        handled.append(cmd)

    http = to_binary_event(_sdk_order_event())
    arrived: Message = from_headers(http.headers, http.body, percent_encoded=True)
    async with TestSystem(orders) as system:
        await system.transport.publish("orders", arrived)
        await system.settle()
    assert handled == [_ORDER]
    assert system.dead_letters("orders") == []
