"""Route declarations are checked when made; the error table maps seawall errors to HTTP."""

from __future__ import annotations

from typing import ClassVar

import msgspec
import pytest

from seawall import (
    ChannelFull,
    CircuitOpen,
    Command,
    ConfigurationError,
    DeadlineExceeded,
    Document,
    Overloaded,
    PermissionDenied,
    RemoteError,
    UnexpectedReply,
    UnknownService,
)
from seawall.gateway import Gateway, Route
from seawall.gateway._errors import error_response, located


class Get(Command, frozen=True):
    type_name: ClassVar[str] = "t.Get"
    item_id: str
    count: int = 1


class Item(Document, frozen=True):
    type_name: ClassVar[str] = "t.Item"
    item_id: str


def test_a_path_parameter_must_be_a_payload_field() -> None:
    with pytest.raises(ConfigurationError, match=r"path parameter \{sku\} is not a field of Get"):
        Gateway().query("/items/{sku}", channel="items", payload=Get, returns=Item)


def test_a_command_needs_a_location_and_a_request_a_reply_class() -> None:
    gateway = Gateway()
    with pytest.raises(ConfigurationError, match="202 Accepted with a Location"):
        gateway.command("POST", "/items", channel="items", payload=Get, location="")
    with pytest.raises(ConfigurationError, match="cache= is for query routes"):
        Route(
            method="POST",
            path="/x",
            kind="request",
            channel="c",
            payload=Get,
            returns=Item,
            cache=1,
        )


def test_two_routes_for_one_method_and_path_are_refused() -> None:
    gateway = Gateway()
    gateway.query("/items/{item_id}", channel="items", payload=Get, returns=Item)
    with pytest.raises(ConfigurationError, match=r"two routes for GET /items/\{item_id\}"):
        gateway.query("/items/{item_id}", channel="other", payload=Get, returns=Item)


@pytest.mark.parametrize(
    ("error", "status", "retry_after"),
    [
        (DeadlineExceeded("late"), 504, None),
        (RemoteError("ValueError", "bad", "items"), 502, None),
        (RemoteError("KeyError", "'x'", "items"), 404, None),
        (UnexpectedReply("other"), 502, None),
        (CircuitOpen("items", retry_after=0.2), 503, "1"),
        (Overloaded("items", limit=8, retry_after=4.5), 503, "5"),
        (ChannelFull("full"), 503, "1"),
        (UnknownService("items"), 503, None),
        (PermissionDenied("no"), 403, None),
    ],
)
def test_the_error_table(error: Exception, status: int, retry_after: str | None) -> None:
    mapped = error_response(error, {"KeyError": 404})
    assert mapped is not None
    assert mapped[0] == status
    assert mapped[1].get("retry-after") == retry_after
    assert mapped[2]["error"] == type(error).__name__


def test_a_bug_is_not_mapped() -> None:
    assert error_response(ZeroDivisionError(), {}) is None


def test_a_validation_error_names_the_field_and_where_it_came_from() -> None:
    try:
        msgspec.convert({"item_id": "a", "count": "x"}, Get, strict=False)
    except msgspec.ValidationError as exc:
        problem = located(exc, {"item_id": "path", "count": "query"}).detail[0]
    assert problem["loc"] == ["query", "count"]
    assert problem["msg"] == "Expected `int`, got `str`"
    try:
        msgspec.convert({}, Get, strict=False)
    except msgspec.ValidationError as exc:
        problem = located(exc, {"item_id": "path"}).detail[0]
    assert problem["loc"] == ["path", "item_id"]
