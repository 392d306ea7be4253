"""Outbox rows: a message into the Debezium layout and back, unchanged."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

import pytest

from seawall import Message, OutboxError, partition_for
from seawall.outbox._rows import by_aggregate, message_of, row_for


def full_message() -> Message:
    return Message(
        id="0190f0a2-0000-7000-8000-000000000001",
        type="orders.OrderPlaced",
        source="orders/1",
        time=datetime(2026, 1, 31, 12, 0, 0, 123456, tzinfo=UTC),
        data=b'{"order_id":"o-1"}',
        kind="event",
        dataschema="urn:seawall:orders.OrderPlaced:1.2.0",
        subject="o-1",
        correlationid="c-1",
        causationid="m-0",
        partitionkey="o-1",
        traceparent="00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        headers={"x-tenant": "acme"},
    )


def test_a_row_holds_every_attribute_and_gives_the_same_message_back() -> None:
    message = full_message()
    row = row_for(message, channel="orders.events", aggregate_type="Order", partitions=16)
    assert (row.id, row.aggregatetype, row.aggregateid, row.type, row.channel) == (
        message.id,
        "Order",
        "o-1",
        "orders.OrderPlaced",
        "orders.events",
    )
    assert row.payload == message.data
    assert row.partition == partition_for("o-1", 16)
    assert '"ce-traceparent"' in row.headers
    assert message_of(row) == message


def test_a_message_without_key_belongs_to_the_empty_aggregate() -> None:
    message = Message(id="m-1", type="t", source="s")
    row = row_for(message, channel="c", aggregate_type="c", partitions=4)
    assert (row.aggregateid, row.partition) == ("", 0)
    assert message_of(row).partitionkey is None


def test_a_row_edited_by_hand_is_refused_with_its_id() -> None:
    row = row_for(full_message(), channel="c", aggregate_type="c", partitions=1)
    with pytest.raises(OutboxError, match=f"row {row.id}.*does not hold a message"):
        message_of(dataclasses.replace(row, headers="{not json"))
    with pytest.raises(OutboxError, match="edited by hand"):
        message_of(dataclasses.replace(row, id="another"))


def test_rows_group_by_aggregate_keeping_their_order() -> None:
    def row(key: str, n: int) -> object:
        message = Message(id=f"{key}-{n}", type="t", source="s", partitionkey=key)
        return row_for(message, channel="c", aggregate_type="c", partitions=1)

    rows = [row("a", 1), row("b", 1), row("a", 2), row("c", 1), row("b", 2)]
    groups = by_aggregate(rows)  # type: ignore[arg-type]
    assert [[r.id for r in g] for g in groups] == [["a-1", "a-2"], ["b-1", "b-2"], ["c-1"]]
