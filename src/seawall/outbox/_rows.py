"""Outbox rows: a message as the outbox table holds it, and back (sans-IO).

The table follows the layout of Debezium's outbox event router, so a
Debezium connector can read it as well as seawall's relays:

=============  ==========================================================
column         holds
=============  ==========================================================
id             the message id (a UUIDv7), the row's identity
aggregatetype  what kind of thing the message is about; Debezium routes by it
aggregateid    the aggregate's id: the message's partition key, the ordering unit
type           the message type name (CloudEvents ``type``)
payload        the encoded payload (the message body)
headers        the CloudEvents attributes as binary-mode headers (a JSON object)
channel        the seawall channel the message goes to
=============  ==========================================================

plus seawall's own ``position`` (commit order per aggregate) and ``partition``
(the aggregate id's hash bucket, which a polling relay claims).
``headers`` is :func:`~seawall.to_headers` of the message, so reading a row
back is :func:`~seawall.from_headers` of it and the payload: every attribute,
extension and unknown header survives the trip.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import msgspec

from .._exceptions import OutboxError
from .._messages.envelope import Message, from_headers, to_headers
from .._transport import partition_for

__all__ = ["OutboxRow", "by_aggregate", "message_of", "row_for", "stored_row"]

_headers_decoder = msgspec.json.Decoder(dict[str, str])
_headers_encoder = msgspec.json.Encoder()


@dataclass(frozen=True, slots=True)
class OutboxRow:
    """One message waiting in the outbox table, column by column."""

    id: str
    aggregatetype: str
    aggregateid: str
    type: str
    payload: bytes
    headers: str
    """The CloudEvents binary-mode headers, as a JSON object."""
    channel: str
    partition: int
    position: int = 0
    """Order of commit within an aggregate; 0 until the database assigned one."""


def row_for(message: Message, *, channel: str, aggregate_type: str, partitions: int) -> OutboxRow:
    """The row that holds ``message`` for ``channel``; its partition key is the aggregate id."""
    aggregate = message.partitionkey or ""
    return OutboxRow(
        id=message.id,
        aggregatetype=aggregate_type,
        aggregateid=aggregate,
        type=message.type,
        payload=message.data,
        headers=_headers_encoder.encode(to_headers(message)).decode(),
        channel=channel,
        partition=partition_for(aggregate, partitions),
    )


def stored_row(record: Sequence[Any]) -> OutboxRow:
    """A row as a query returns it: position, then the columns in :class:`OutboxRow` order."""
    position, id, aggregatetype, aggregateid, type, payload, headers, channel, partition = record
    return OutboxRow(
        id=id,
        aggregatetype=aggregatetype,
        aggregateid=aggregateid,
        type=type,
        payload=payload,
        headers=headers,
        channel=channel,
        partition=partition,
        position=position,
    )


def message_of(row: OutboxRow) -> Message:
    """The message a row holds (its id is the row's id)."""
    try:
        headers = _headers_decoder.decode(row.headers)
        message = from_headers(headers, row.payload)
    except (msgspec.DecodeError, msgspec.ValidationError, ValueError) as exc:
        raise OutboxError(
            f"outbox row {row.id} (type {row.type!r}, channel {row.channel!r}) does not hold a "
            f"message: {exc}; delete the row or fix its headers column"
        ) from exc
    if message.id != row.id:
        raise OutboxError(
            f"outbox row {row.id} holds headers of message {message.id}; the row id is the "
            "message id, so one of them was edited by hand"
        )
    return message


def by_aggregate(rows: Iterable[OutboxRow]) -> list[list[OutboxRow]]:
    """The rows grouped by aggregate id (the partition key), each in the order given."""
    groups: dict[str, list[OutboxRow]] = {}
    for row in rows:
        groups.setdefault(row.aggregateid, []).append(row)
    return list(groups.values())
