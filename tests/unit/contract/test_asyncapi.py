"""The AsyncAPI 3.0 export: valid by the official JSON Schema, and saying what the code says."""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from click.testing import CliRunner

from seawall._cli import main
from seawall.contract import export

from .shop import shop, system

_SCHEMA = json.loads(
    gzip.decompress((Path(__file__).parent / "data" / "asyncapi-3.0.0.json.gz").read_bytes())
)


def _errors(doc: dict[str, Any]) -> list[str]:
    validator = jsonschema.Draft7Validator(_SCHEMA)
    return [f"{list(e.absolute_path)}: {e.message[:200]}" for e in validator.iter_errors(doc)]


@pytest.mark.parametrize(
    "url", [None, "memory://", "nats://127.0.0.1:4222", "amqp://guest:guest@h:5672/", "redis://h"]
)
def test_the_document_validates_against_the_official_schema(url: str | None) -> None:
    doc = export(shop, transport=url)
    assert _errors(doc) == []


def test_the_official_schema_refuses_a_broken_document() -> None:
    # the validator has teeth: a wrong action and a numeric address are both caught
    doc = export(shop)
    doc["operations"]["shop.place"]["action"] = "eat"
    doc["channels"]["shop"]["address"] = 5
    assert len(_errors(doc)) == 2


def test_channels_operations_and_messages_follow_the_handlers() -> None:
    doc = export(system, version="2.1.0")
    assert doc["info"]["version"] == "2.1.0"
    assert set(doc["channels"]) == {"shop", "shop.replies", "billing.events"}
    assert doc["channels"]["shop"]["address"] == "shop"
    assert doc["channels"]["shop.replies"]["address"] is None
    place = doc["operations"]["shop.place"]
    assert place["action"] == "receive"
    assert place["messages"] == [{"$ref": "#/channels/shop/messages/shop.PlaceOrder.v1"}]
    replies = [r["$ref"].rsplit("/", 1)[-1] for r in place["reply"]["messages"]]
    assert replies == ["shop.OrderPlaced.v1", "seawall.Failure.v1"]
    assert "reply" not in doc["operations"]["shop.on_paid"]
    message = doc["components"]["messages"]["shop.PlaceOrder.v1"]
    assert message["name"] == "shop.PlaceOrder"
    assert message["x-seawall-version"] == "1.2.0"
    assert message["headers"] == {"$ref": "#/components/schemas/seawall.Envelope"}
    payload = doc["components"]["schemas"]["PlaceOrder"]
    assert payload["required"] == ["order_id", "items", "ship_to"]
    assert payload["properties"]["ship_to"] == {"$ref": "#/components/schemas/Address"}


def test_bindings_follow_the_transport() -> None:
    nats = export(shop, transport="nats://127.0.0.1:4222")
    assert nats["servers"]["default"] == {"host": "127.0.0.1:4222", "protocol": "nats"}
    assert nats["operations"]["shop.on_paid"]["bindings"]["nats"]["queue"] == "shop"
    amqp = export(shop, transport="amqp://guest:guest@h:5672/")
    assert amqp["channels"]["shop"]["bindings"]["amqp"]["is"] == "queue"
    assert amqp["channels"]["billing.events"]["bindings"]["amqp"]["is"] == "routingKey"
    assert "servers" not in export(shop)


def test_cli_export_writes_the_document(tmp_path: Path) -> None:
    out = tmp_path / "asyncapi.json"
    result = CliRunner().invoke(
        main, ["contract", "export", "tests.unit.contract.shop:system", "-o", str(out)]
    )
    assert result.exit_code == 0, result.output
    doc = json.loads(out.read_text())
    assert _errors(doc) == []
    assert "shop.PlaceOrder.v1" in doc["components"]["messages"]
