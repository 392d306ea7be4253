"""Tests for payload classes, the type registry and the JSON / MessagePack codecs."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from seawall import (
    JSON,
    MSGPACK,
    Codec,
    Command,
    ConfigurationError,
    DecodeError,
    Document,
    Event,
    Payload,
    TypeRegistry,
    UnknownMessageType,
)
from seawall._messages.codec import codec_for
from seawall._messages.payload import schema_uri


class CreateOrder(Command):
    type_name = "orders.CreateOrder"
    type_version = "1.4.0"

    order_id: str
    total: int


class OrderPlaced(Event):
    order_id: str


class OrderView(Document):
    order_id: str
    lines: list[str] = msgspec.field(default_factory=list)


class Shipment(Event):
    """A payload with one field of each kind the codecs must carry."""

    type_name = "shipping.Shipment"

    shipment_id: str
    parcels: int
    weight_kg: float
    express: bool
    labels: list[str]
    stock: dict[str, int]
    signature: bytes
    note: str | None = None
    shipped_at: datetime | None = None


# --- payload classes ----------------------------------------------------------------------


def test_type_name_defaults_to_the_class_name() -> None:
    assert OrderPlaced.type_name == "OrderPlaced"
    assert OrderView.type_name == "OrderView"


def test_explicit_type_name_is_kept() -> None:
    assert CreateOrder.type_name == "orders.CreateOrder"


def test_subclass_gets_its_own_default_type_name() -> None:
    class CreateRushOrder(CreateOrder):
        pass

    assert CreateRushOrder.type_name == "CreateRushOrder"
    assert CreateOrder.type_name == "orders.CreateOrder"


def test_type_version_defaults_to_1_0_0_and_is_inherited() -> None:
    class CreateRushOrder(CreateOrder):
        pass

    assert OrderPlaced.type_version == "1.0.0"
    assert CreateRushOrder.type_version == "1.4.0"


@pytest.mark.parametrize("version", ["0.1.0", "1.4.2", "10.20.30", "1.0.0-rc.1", "2.0.0+build.7"])
def test_semver_versions_are_accepted(version: str) -> None:
    class Versioned(Event):
        type_version = version

    assert Versioned.type_version == version


@pytest.mark.parametrize("version", ["1.0", "1", "v1.0.0", "01.0.0", "1.0.0.0", "", "one"])
def test_bad_semver_is_refused_with_a_helpful_message(version: str) -> None:
    with pytest.raises(ConfigurationError) as caught:

        class Versioned(Event):
            type_version = version

    text = str(caught.value)
    assert f"Versioned.type_version = {version!r} is not a semver version" in text
    assert "MAJOR.MINOR.PATCH" in text
    assert isinstance(caught.value, ValueError)


@pytest.mark.parametrize(
    ("cls", "kind"),
    [
        (CreateOrder, "command"),
        (OrderPlaced, "event"),
        (OrderView, "document"),
        (Payload, "document"),
    ],
)
def test_kind_follows_the_base_class(cls: type[Payload], kind: str) -> None:
    assert cls.kind == kind


def test_payloads_are_frozen() -> None:
    order = CreateOrder(order_id="o-1", total=1999)
    with pytest.raises(AttributeError):
        order.total = 0  # type: ignore[misc]
    assert order.total == 1999
    assert hash(order) == hash(CreateOrder(order_id="o-1", total=1999))


def test_fields_are_keyword_only() -> None:
    with pytest.raises(TypeError):
        CreateOrder("o-1", 1999)  # type: ignore[misc]


def test_class_attributes_are_not_encoded() -> None:
    assert JSON.encode(CreateOrder(order_id="o-1", total=5)) == b'{"order_id":"o-1","total":5}'


def test_schema_uri_names_type_and_version() -> None:
    assert schema_uri(CreateOrder) == "urn:seawall:orders.CreateOrder:1.4.0"
    assert schema_uri(OrderPlaced) == "urn:seawall:OrderPlaced:1.0.0"


# --- TypeRegistry -------------------------------------------------------------------------


@pytest.fixture
def registry() -> TypeRegistry:
    types = TypeRegistry()
    types.register(CreateOrder)
    types.register(OrderPlaced)
    return types


def test_registry_resolves_registered_types(registry: TypeRegistry) -> None:
    assert registry.resolve("orders.CreateOrder") is CreateOrder
    assert registry.resolve("OrderPlaced") is OrderPlaced
    assert "orders.CreateOrder" in registry
    assert "CreateOrder" not in registry


def test_registering_the_same_class_twice_is_harmless(registry: TypeRegistry) -> None:
    registry.register(CreateOrder)
    assert registry.resolve("orders.CreateOrder") is CreateOrder


def test_a_second_class_for_one_type_name_is_refused(registry: TypeRegistry) -> None:
    class Impostor(Command):
        type_name = "orders.CreateOrder"

    with pytest.raises(ConfigurationError) as caught:
        registry.register(Impostor)

    text = str(caught.value)
    assert "'orders.CreateOrder' version 1.x is declared twice" in text
    assert f"{__name__}.CreateOrder" in text
    assert "Impostor" in text
    assert "another type_name" in text
    assert registry.resolve("orders.CreateOrder") is CreateOrder


def test_unknown_type_lists_the_known_ones(registry: TypeRegistry) -> None:
    with pytest.raises(UnknownMessageType) as caught:
        registry.resolve("orders.CancelOrder")

    text = str(caught.value)
    assert "'orders.CancelOrder'" in text
    assert "['OrderPlaced', 'orders.CreateOrder']" in text
    assert isinstance(caught.value, LookupError)


def test_unknown_type_in_an_empty_registry_says_none_are_known() -> None:
    with pytest.raises(UnknownMessageType, match="known types: none"):
        TypeRegistry().resolve("orders.CreateOrder")


@pytest.mark.parametrize("version", ["2.0.0", "0.9.0", "11.4.0"])
def test_another_major_version_is_refused(registry: TypeRegistry, version: str) -> None:
    with pytest.raises(UnknownMessageType) as caught:
        registry.resolve("orders.CreateOrder", f"urn:seawall:orders.CreateOrder:{version}")

    text = str(caught.value)
    assert f"schema version {version}" in text
    assert "the classes for it are CreateOrder (1.4.0)" in text
    assert "upcaster" in text


@pytest.mark.parametrize(
    "dataschema",
    [
        "urn:seawall:orders.CreateOrder:1.4.0",
        "urn:seawall:orders.CreateOrder:1.9.3",
        "urn:seawall:orders.CreateOrder:1.0.0",
        None,
        "",
        "https://schemas.example/orders/create-order.json",
    ],
)
def test_same_major_version_or_foreign_schema_resolves(
    registry: TypeRegistry, dataschema: str | None
) -> None:
    assert registry.resolve("orders.CreateOrder", dataschema) is CreateOrder


def test_schema_uri_resolves_to_its_class(registry: TypeRegistry) -> None:
    assert registry.resolve(CreateOrder.type_name, schema_uri(CreateOrder)) is CreateOrder


# --- codecs -------------------------------------------------------------------------------

shipments = st.builds(
    Shipment,
    shipment_id=st.text(max_size=20),
    parcels=st.integers(min_value=-(2**63), max_value=2**63 - 1),
    weight_kg=st.floats(allow_nan=False, allow_infinity=False),
    express=st.booleans(),
    labels=st.lists(st.text(max_size=10), max_size=4),
    stock=st.dictionaries(st.text(max_size=8), st.integers(0, 10**6), max_size=4),
    signature=st.binary(max_size=32),
    note=st.none() | st.text(max_size=20),
    shipped_at=st.none() | st.datetimes(timezones=st.just(UTC)),
)


@pytest.mark.parametrize("codec", [JSON, MSGPACK], ids=["json", "msgpack"])
@settings(max_examples=100, deadline=None)
@given(shipment=shipments)
def test_codec_round_trips_a_payload(codec: Codec, shipment: Shipment) -> None:
    data = codec.encode(shipment)
    assert isinstance(data, bytes)
    assert codec.decode(data, Shipment) == shipment


def test_codecs_produce_their_own_wire_format() -> None:
    order = CreateOrder(order_id="o-1", total=5)
    assert JSON.encode(order).startswith(b"{")
    assert MSGPACK.encode(order)[0] == 0x82  # a MessagePack fixmap of two entries
    assert MSGPACK.decode(MSGPACK.encode(order), CreateOrder) == order


@pytest.mark.parametrize(
    ("codec", "data"),
    [
        (JSON, b"{"),
        (JSON, b'{"order_id": "o-1", "total": "lots"}'),
        (JSON, b'{"total": 5}'),
        (MSGPACK, b"\xc1"),
        (MSGPACK, JSON.encode(CreateOrder(order_id="o-1", total=5))),
    ],
    ids=["json-truncated", "json-wrong-type", "json-missing-field", "msgpack-bad", "msgpack-json"],
)
def test_bad_bytes_raise_decode_error_naming_the_type(codec: Codec, data: bytes) -> None:
    expected = f"{codec.content_type} body is not a valid orders.CreateOrder"
    with pytest.raises(DecodeError, match=re.escape(expected)):
        codec.decode(data, CreateOrder)


def test_decode_error_names_a_plain_class_by_its_name() -> None:
    with pytest.raises(DecodeError, match="body is not a valid int"):
        JSON.decode(b'"seven"', int)


@pytest.mark.parametrize(
    ("content_type", "codec"),
    [
        (None, JSON),
        ("", JSON),
        ("application/json", JSON),
        ("application/json; charset=utf-8", JSON),
        ("Application/JSON", JSON),
        ("application/msgpack", MSGPACK),
        (" application/msgpack ;q=1", MSGPACK),
    ],
)
def test_codec_for_content_type(content_type: str | None, codec: Codec) -> None:
    assert codec_for(content_type) is codec


@pytest.mark.parametrize("content_type", ["text/plain", "application/xml", "json"])
def test_codec_for_unknown_content_type_is_refused(content_type: str) -> None:
    with pytest.raises(DecodeError) as caught:
        codec_for(content_type)
    text = str(caught.value)
    assert f"no codec for content type {content_type!r}" in text
    assert "['application/json', 'application/msgpack']" in text
