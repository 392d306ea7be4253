"""Reading pgoutput messages without a server: transactions, relations, what is skipped."""

from __future__ import annotations

import struct

import pytest

from seawall import Event, MemoryTransport, OutboxError, System
from seawall.outbox._pgoutput import ChangeReader, Heartbeat, format_lsn, parse_lsn
from seawall.outbox._rows import OutboxRow, message_of, row_for

COLUMNS = (
    "id",
    "aggregatetype",
    "aggregateid",
    "type",
    "payload",
    "headers",
    "channel",
    "partition",
    "position",
    "published_at",
)


class Moved(Event, frozen=True):
    key: str


def cstr(text: str) -> bytes:
    return text.encode() + b"\0"


def begin(xid: int) -> bytes:
    return b"B" + struct.pack(">QqI", 1000, 0, xid)


def relation(relid: int, schema: str, table: str, columns: tuple[str, ...] = COLUMNS) -> bytes:
    body = b"".join(b"\0" + cstr(c) + struct.pack(">Ii", 25, -1) for c in columns)
    return (
        b"R" + struct.pack(">I", relid) + cstr(schema) + cstr(table) + b"d"
        + struct.pack(">H", len(columns)) + body
    )  # fmt: skip


def insert(relid: int, values: list[str | None]) -> bytes:
    cells = b"".join(
        b"n" if v is None else b"t" + struct.pack(">I", len(v.encode())) + v.encode()
        for v in values
    )
    return b"I" + struct.pack(">IcH", relid, b"N", len(values)) + cells


def commit(end_lsn: int) -> bytes:
    return b"C" + struct.pack(">BQQq", 0, end_lsn - 8, end_lsn, 0)


def texts(row: OutboxRow, position: int, columns: tuple[str, ...] = COLUMNS) -> list[str | None]:
    value = {
        "id": row.id,
        "aggregatetype": row.aggregatetype,
        "aggregateid": row.aggregateid,
        "type": row.type,
        "payload": "\\x" + row.payload.hex(),
        "headers": row.headers,
        "channel": row.channel,
        "partition": str(row.partition),
        "position": str(position),
        "published_at": None,
    }
    return [value[c] for c in columns]


async def rows(count: int) -> list[OutboxRow]:
    async with System(transport=MemoryTransport()) as system:
        ctx = system.context("mover")
        return [
            row_for(
                ctx.envelope(Moved(key=f"k{n}"), key=f"k{n}"),
                channel="mover.events",
                aggregate_type="Move",
                partitions=16,
            )
            for n in range(count)
        ]


async def test_a_committed_transaction_yields_its_rows_in_order_and_where_it_ends() -> None:
    a, b = await rows(2)
    reader = ChangeReader("outbox")
    assert reader.feed(begin(7)) is None
    assert reader.feed(relation(16400, "public", "outbox")) is None
    assert reader.feed(insert(16400, texts(a, 1))) is None
    assert reader.feed(insert(16400, texts(b, 2))) is None
    done = reader.feed(commit(0x1_0000_0040))
    assert done is not None
    assert (done.xid, done.end_lsn) == (7, 0x1_0000_0040)
    assert [(r.id, r.position) for r in done.rows] == [(a.id, 1), (b.id, 2)]
    assert message_of(done.rows[0]) == message_of(a)
    assert done.rows[1].payload == b.payload


async def test_columns_are_read_by_name_and_other_tables_are_skipped() -> None:
    (a,) = await rows(1)
    shuffled = tuple(reversed(COLUMNS))
    reader = ChangeReader("outbox", schema="shop")
    reader.feed(begin(8))
    reader.feed(relation(1, "public", "outbox", shuffled))  # same name, other schema
    reader.feed(relation(2, "shop", "outbox", shuffled))
    reader.feed(insert(1, texts(a, 1, shuffled)))
    reader.feed(insert(2, texts(a, 5, shuffled)))
    reader.feed(b"Y" + struct.pack(">I", 99) + cstr("public") + cstr("mood"))
    reader.feed(b"O" + struct.pack(">Q", 5) + cstr("origin"))
    done = reader.feed(commit(100))
    assert done is not None
    assert [r.position for r in done.rows] == [5]


def test_a_transaction_without_rows_still_moves_the_slot_and_a_stray_commit_is_skipped() -> None:
    reader = ChangeReader("outbox")
    assert reader.feed(commit(50)) is None  # its begin came before this session
    reader.feed(begin(9))
    done = reader.feed(commit(60))
    assert done is not None
    assert (done.rows, done.end_lsn) == ([], 60)


def message(transactional: bool, lsn: int) -> bytes:
    content = b"seawall_outbox"
    return (
        b"M" + struct.pack(">BQ", transactional, lsn) + cstr("seawall-outbox")
        + struct.pack(">I", len(content)) + content
    )  # fmt: skip


def test_a_non_transactional_message_is_a_heartbeat_the_slot_may_pass() -> None:
    reader = ChangeReader("outbox")
    beat = reader.feed(message(False, 500))
    assert isinstance(beat, Heartbeat)
    assert beat.end_lsn == 501
    reader.feed(begin(3))
    assert reader.feed(message(True, 600)) is None  # part of a transaction: its commit counts
    done = reader.feed(commit(700))
    assert done is not None
    assert done.end_lsn == 700


async def test_broken_messages_are_outbox_errors() -> None:
    (a,) = await rows(1)
    reader = ChangeReader("outbox")
    reader.feed(begin(1))
    with pytest.raises(OutboxError, match="does not decode"):
        reader.feed(relation(3, "public", "outbox")[:12])
    reader.feed(relation(3, "public", "outbox"))
    bad = texts(a, 1)
    bad[COLUMNS.index("payload")] = "not hex"
    with pytest.raises(OutboxError, match="bytea_output"):
        reader.feed(insert(3, bad))
    missing = texts(a, 1)
    missing[COLUMNS.index("channel")] = None
    with pytest.raises(OutboxError, match="'channel' is missing"):
        reader.feed(insert(3, missing))


def test_lsns_read_and_write_as_postgresql_does() -> None:
    assert format_lsn(0x16_B374D848) == "16/B374D848"
    assert parse_lsn("16/B374D848") == 0x16_B374D848
    assert parse_lsn(format_lsn(0)) == 0
