"""Reading PostgreSQL's ``pgoutput`` logical decoding messages (sans-IO).

Logical decoding turns the write-ahead log back into row changes of
committed transactions, in commit order; a rolled-back transaction never
appears. The ``pgoutput`` plugin (built into PostgreSQL 10 and later, the
one Debezium and PostgreSQL's own subscriptions use) sends, per transaction:
``B`` (begin: its xid), for each table first met in a decoding session an
``R`` (relation: its id, schema, name and columns), the changes (``I`` for
an insert: the relation id and the new row, each value as text or null),
and ``C`` (commit: the commit's LSN and the *end* LSN of the transaction).
With ``publish = 'insert'`` on the publication only inserts are sent; with
the ``messages`` option, ``M`` carries what ``pg_logical_emit_message`` wrote.

:class:`ChangeReader` is fed those messages one by one (bytes, from
``pg_logical_slot_peek_binary_changes``) and hands back each committed
transaction with the outbox rows it inserted, and the LSN a slot may be
advanced to once they are published. Protocol version 1, text values.

A non-transactional message comes back as a :class:`Heartbeat`: changes come
in the order of their commit records in the WAL, so every transaction that
committed before it has been handed back, and the slot may move just past
it. A relay emits one when its outbox is quiet and the rest of the database
is not, so the slot does not hold WAL back. (Moving the slot to any other
position it did not read, e.g. the flushed end of the WAL, is not safe: a
commit record can straddle it and would then be skipped for ever.)
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from .._exceptions import OutboxError
from ._rows import OutboxRow

__all__ = ["ChangeReader", "Committed", "Heartbeat", "format_lsn", "parse_lsn"]

_BEGIN = struct.Struct(">QqI")
_COMMIT = struct.Struct(">BQQq")
_MESSAGE = struct.Struct(">BQ")  # transactional flag, LSN
_U32 = struct.Struct(">I")
_U16 = struct.Struct(">H")
_COLUMN_TAIL = struct.Struct(">Ii")  # type oid, type modifier


def format_lsn(lsn: int) -> str:
    """An LSN as PostgreSQL writes it: ``16/B374D848``."""
    return f"{lsn >> 32:X}/{lsn & 0xFFFFFFFF:X}"


def parse_lsn(text: str) -> int:
    """The number behind PostgreSQL's ``16/B374D848``."""
    high, _, low = text.partition("/")
    return (int(high, 16) << 32) | int(low, 16)


@dataclass(frozen=True, slots=True)
class Committed:
    """A committed transaction: the outbox rows it inserted, in order, and where it ends."""

    xid: int
    end_lsn: int
    """Advance the slot here once the rows are published: the transaction is then done."""
    rows: list[OutboxRow] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Heartbeat:
    """A non-transactional logical decoding message: everything before it was read."""

    lsn: int

    @property
    def end_lsn(self) -> int:
        """Just past the message: a slot moved here does not send it again."""
        return self.lsn + 1


class _Cursor:
    """Reads big-endian fields and NUL-terminated strings from one message."""

    __slots__ = ("at", "data")

    def __init__(self, data: bytes, at: int = 1) -> None:
        self.data = data
        self.at = at

    def unpack(self, fmt: struct.Struct) -> tuple[int, ...]:
        values = fmt.unpack_from(self.data, self.at)
        self.at += fmt.size
        return values

    def string(self) -> str:
        end = self.data.index(b"\0", self.at)
        text = self.data[self.at : end].decode()
        self.at = end + 1
        return text

    def byte(self) -> bytes:
        self.at += 1
        return self.data[self.at - 1 : self.at]

    def take(self, size: int) -> bytes:
        self.at += size
        return self.data[self.at - size : self.at]


class ChangeReader:
    """Turns a stream of pgoutput messages into committed transactions on one table."""

    def __init__(self, table: str, *, schema: str = "public") -> None:
        self.table = table
        self.schema = schema
        self._columns: dict[int, tuple[str, ...] | None] = {}
        """Relation id -> its column names, or None for a table that is not ours."""
        self._open: Committed | None = None

    def feed(self, data: bytes) -> Committed | Heartbeat | None:
        """Read one message; the transaction it completes (a commit), or a heartbeat."""
        try:
            return self._feed(data)
        except (struct.error, ValueError, IndexError, UnicodeDecodeError) as exc:
            raise OutboxError(
                f"a pgoutput message ({data[:1]!r}, {len(data)} bytes) does not decode: {exc}"
            ) from exc

    def _feed(self, data: bytes) -> Committed | Heartbeat | None:
        kind = data[:1]
        if kind == b"B":
            _, _, xid = _BEGIN.unpack_from(data, 1)
            self._open = Committed(xid, 0)
        elif kind == b"R":
            self._relation(_Cursor(data))
        elif kind == b"I":
            self._insert(_Cursor(data))
        elif kind == b"C":
            return self._commit(data)
        elif kind == b"M":
            transactional, lsn = _MESSAGE.unpack_from(data, 1)
            return None if transactional else Heartbeat(lsn)
        return None  # origin, type, truncate, update, delete, message: not an outbox insert

    def _relation(self, cursor: _Cursor) -> None:
        (relation,) = cursor.unpack(_U32)
        schema, name = cursor.string(), cursor.string()
        cursor.byte()  # replica identity
        (count,) = cursor.unpack(_U16)
        columns = []
        for _ in range(count):
            cursor.byte()  # flags
            columns.append(cursor.string())
            cursor.unpack(_COLUMN_TAIL)
        ours = name == self.table and schema == self.schema
        self._columns[relation] = tuple(columns) if ours else None

    def _insert(self, cursor: _Cursor) -> None:
        (relation,) = cursor.unpack(_U32)
        columns = self._columns.get(relation)
        if columns is None or self._open is None:
            return
        if cursor.byte() != b"N":
            raise ValueError("an insert without its new tuple")
        values = dict(zip(columns, _tuple(cursor), strict=True))
        self._open.rows.append(_row(values))

    def _commit(self, data: bytes) -> Committed | None:
        _, _, end_lsn, _ = _COMMIT.unpack_from(data, 1)
        done, self._open = self._open, None
        if done is None:
            return None  # a commit whose begin came before this session: nothing of it is ours
        return Committed(done.xid, end_lsn, done.rows)


def _tuple(cursor: _Cursor) -> list[str | None]:
    (count,) = cursor.unpack(_U16)
    values: list[str | None] = []
    for _ in range(count):
        kind = cursor.byte()
        if kind == b"n" or kind == b"u":  # null; unchanged toast (never in an insert)
            values.append(None)
        else:  # b"t": text; b"b" (binary) is only sent when asked for
            (size,) = cursor.unpack(_U32)
            values.append(cursor.take(size).decode())
    return values


def _row(values: dict[str, str | None]) -> OutboxRow:
    """An outbox row from its column texts (bytea in PostgreSQL's hex form)."""

    def text(name: str) -> str:
        value = values.get(name)
        if value is None:
            raise ValueError(f"column {name!r} is missing or null")
        return value

    payload = text("payload")
    if not payload.startswith("\\x"):
        raise ValueError("payload is not in bytea's hex output form; set bytea_output = 'hex'")
    return OutboxRow(
        id=text("id"),
        aggregatetype=text("aggregatetype"),
        aggregateid=text("aggregateid"),
        type=text("type"),
        payload=bytes.fromhex(payload[2:]),
        headers=text("headers"),
        channel=text("channel"),
        partition=int(text("partition")),
        position=int(text("position")),
    )
