"""Reading AMQP deliveries into seawall messages, without a broker: CloudEvents
headers in both spellings, broker headers dropped, attempts counted, and foreign
messages handed on (to be dead-lettered) instead of breaking the subscription."""

from __future__ import annotations

from typing import Any

import aiormq.abc
from pamqp import commands as spec
from pamqp.header import ContentHeader

from seawall import to_headers
from seawall.testing._conformance import make_message
from seawall.transports.rabbitmq._subscription import CE_PREFIX, _attempt, decode


def delivered(
    body: bytes,
    headers: dict[str, Any],
    *,
    content_type: str | None = "application/json",
    redelivered: bool = False,
    message_id: str | None = None,
) -> aiormq.abc.DeliveredMessage:
    properties = spec.Basic.Properties(
        headers=headers, content_type=content_type, message_id=message_id
    )
    return aiormq.abc.DeliveredMessage(
        delivery=spec.Basic.Deliver(
            consumer_tag="c", delivery_tag=1, redelivered=redelivered, routing_key="0"
        ),
        header=ContentHeader(properties=properties),
        body=body,
        channel=None,  # type: ignore[arg-type]  # decoding never touches the channel
    )


def test_a_seawall_message_survives_the_amqp_headers_and_broker_additions() -> None:
    sent = make_message(7, key="order-1")
    headers: dict[str, Any] = to_headers(sent, CE_PREFIX)
    content_type = headers.pop("content-type")
    headers |= {"x-delivery-count": 2, "x-death": [{"count": 1}], "seawall-attempt": 3}
    msg = delivered(sent.data, headers, content_type=content_type)
    assert decode(msg) == sent, "broker and adapter headers must not leak into the message"
    assert _attempt(msg) == 5, "attempt = where it was republished from + returns since"


def test_cloudevents_underscore_spelling_and_foreign_header_values_are_read() -> None:
    headers = {
        "cloudEvents_id": "e-1",
        "cloudEvents_type": "shop.Shipped",
        "cloudEvents_source": "jms-client",
        "cloudEvents_specversion": b"1.0",
        "x-retries": 3,
        "x-raw": b"\xff\xfe",
    }
    message = decode(delivered(b"{}", headers))
    assert (message.id, message.type, message.source) == ("e-1", "shop.Shipped", "jms-client")
    assert message.headers["x-retries"] == "3"
    assert message.headers["x-raw"] == "\ufffd\ufffd", "bytes that are not UTF-8 are replaced"


def test_a_message_without_cloudevents_headers_is_handed_on_for_dead_lettering() -> None:
    message = decode(delivered(b"hello", {}, content_type=None, message_id="m-9"))
    assert message.type == "seawall.rabbitmq.Undecodable"
    assert message.id == "m-9"
    assert message.data == b"hello"
    assert "cloudEvents:id" in message.headers["seawall-decode-error"]


def test_classic_queues_count_a_return_by_the_redelivered_flag() -> None:
    assert _attempt(delivered(b"", {})) == 1
    assert _attempt(delivered(b"", {}, redelivered=True)) == 2
    assert _attempt(delivered(b"", {"seawall-attempt": 4}, redelivered=True)) == 5
