"""The message envelope and its CloudEvents binary-mode header mapping.

A :class:`Message` carries the CloudEvents 1.0 context attributes plus the
extensions of DESIGN.md (kind, correlation, causation, reply-to, partition
key, deadline, trace context); ``data`` holds the encoded payload. On the wire
the attributes travel as headers and the payload as the body ("binary content
mode"), so any CloudEvents consumer can read a seawall message. Header names
take a prefix per protocol binding: ``ce-`` for HTTP and NATS, ``ce_`` for
Kafka-style headers, ``cloudEvents:`` for AMQP. Headers seawall does not know
are kept in :attr:`Message.headers` and passed on untouched.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, unquote

import msgspec

from .._exceptions import DecodeError
from .payload import Kind

__all__ = [
    "DLQ_HEADERS",
    "DLQ_REASON",
    "REDRIVE_OF",
    "RETRY_HEADER",
    "Message",
    "decode_message",
    "decode_message_raw",
    "encode_message",
    "encode_message_into",
    "from_attributes",
    "from_headers",
    "header_attributes",
    "header_lines",
    "to_headers",
]

DLQ_REASON = "seawall-dlq-reason"
"""The header that makes a message a dead letter: why it was given up."""
DLQ_HEADERS = (
    DLQ_REASON,
    "seawall-dlq-error",
    "seawall-dlq-attempt",
    "seawall-dlq-channel",
    "seawall-dlq-group",
    "seawall-dlq-time",
)
"""The headers a dead letter carries: why, the error, its attempts, where it came from, when.
Part of the message model because brokers and tools read them too, not only the runtime."""
RETRY_HEADER = "seawall-retry"
"""Set on a request sent again, to the how-manyth send it is (the message id stays): a
broker that drops a repeated message id as a duplicate publish must not drop a deliberate
retry; the responder's reply cache is what makes the repeat harmless."""
REDRIVE_OF = "seawall-redrive-of"
"""On a dead letter sent back to its channel (``seawall dlq redrive``): which dead letter
it was (its key). It keeps the message id, so the inbox of an idempotent handler applies;
brokers that drop duplicates by id make it part of their key, so a redrive is not taken
for a duplicate of the first publish, and the same redrive done twice is."""

_KINDS = frozenset({"command", "event", "document"})


class Message(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True, gc=False):
    """One message: CloudEvents attributes, seawall extensions and the encoded payload.

    Not tracked by the garbage collector (``gc=False``): its fields are text, bytes, times
    and a dict of text, so it can never be part of a reference cycle, and a few are made
    per message handled.
    """

    id: str
    type: str
    source: str
    time: datetime | None = None
    data: bytes = b""
    kind: Kind = "event"
    specversion: str = "1.0"
    datacontenttype: str = "application/json"
    dataschema: str | None = None
    subject: str | None = None
    correlationid: str | None = None
    causationid: str | None = None
    replyto: str | None = None
    partitionkey: str | None = None
    deadline: datetime | None = None
    traceparent: str | None = None
    tracestate: str | None = None
    headers: dict[str, str] = msgspec.field(default_factory=dict)
    """Headers seawall does not interpret, by their wire name."""

    def deadline_ts(self) -> float | None:
        """The deadline as epoch seconds, or None."""
        return None if self.deadline is None else self.deadline.timestamp()


# attribute -> is it a timestamp; the order is the order written to headers
_OPTIONAL_ATTRS: dict[str, bool] = {
    "time": True,
    "dataschema": False,
    "subject": False,
    "kind": False,
    "correlationid": False,
    "causationid": False,
    "replyto": False,
    "partitionkey": False,
    "deadline": True,
    "traceparent": False,
    "tracestate": False,
}
_REQUIRED_ATTRS = ("id", "type", "source", "specversion")
_KNOWN = frozenset(_REQUIRED_ATTRS) | frozenset(_OPTIONAL_ATTRS)
# HTTP binding 3.1.3.2: printable ASCII except space, '"' and '%' travel as they are
_HTTP_SAFE = "".join(chr(c) for c in range(0x21, 0x7F) if chr(c) not in '"%')


_rfc3339 = msgspec.json.Encoder().encode  # a UTC datetime as '"...Z"', in C


def _format_time(value: datetime) -> str:
    """``value`` in UTC as ``isoformat`` writes it, with ``Z`` for the offset (msgspec
    writes the same text about eight times faster; a publish formats one or two)."""
    if value.tzinfo is not UTC:  # naive means UTC, as in _parse_time
        value = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    return _rfc3339(value)[1:-1].decode()


def _parse_time(name: str, text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise DecodeError(
            f"header {name!r} = {text!r} is not an RFC 3339 timestamp, e.g. '2026-01-31T12:00:00Z'"
        ) from None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _unescape(name: str, value: str) -> str:
    try:
        return unquote(value, errors="strict")
    except UnicodeDecodeError:
        raise DecodeError(f"header {name!r} = {value!r} percent-decodes to invalid UTF-8") from None


_FIELD_INDEX = {name: i for i, name in enumerate(Message.__struct_fields__)}


@functools.cache
def _written(prefix: str) -> tuple[tuple[int, str, bool], ...]:
    """(field index, header name, is a time) of each attribute, in the order written."""
    order = [(name, False) for name in _REQUIRED_ATTRS] + list(_OPTIONAL_ATTRS.items())
    return tuple((_FIELD_INDEX[name], prefix + name, is_time) for name, is_time in order)


@functools.cache
def _read(prefix: str) -> dict[str, str]:
    """Attribute by header name, as :func:`to_headers` writes them (others are lowered)."""
    return {prefix + name: name for name in _KNOWN}


@functools.cache
def header_attributes(prefix: str = "ce-") -> dict[str, str]:
    """The attribute each header name :func:`to_headers` writes stands for, ``content-type``
    (``datacontenttype``) included; the keys are those names exactly, in lower case."""
    return {**_read(prefix), "content-type": "datacontenttype"}


@functools.cache
def _heads(prefix: str) -> tuple[tuple[int, str, bool], ...]:
    """(field index, ``"<header name>: "``, is a time) of each attribute, in the order written."""
    return tuple((index, f"{key}: ", is_time) for index, key, is_time in _written(prefix))


def to_headers(
    message: Message, prefix: str = "ce-", *, percent_encoded: bool = False
) -> dict[str, str]:
    """Message attributes as binary-mode headers (the body is ``message.data``).

    ``percent_encoded`` escapes attribute values as the HTTP binding requires.
    """
    # On every NATS and Redis publish: the fields in one C call, the names made once.
    values = msgspec.structs.astuple(message)
    headers: dict[str, str] = {}
    for index, key, is_time in _written(prefix):
        value = values[index]
        if value is not None:
            headers[key] = _format_time(value) if is_time else value
    if percent_encoded:
        headers = {key: quote(value, safe=_HTTP_SAFE) for key, value in headers.items()}
    headers["content-type"] = message.datacontenttype
    headers.update(message.headers)
    return headers


def header_lines(message: Message, prefix: str = "ce-") -> list[str] | None:
    """The headers :func:`to_headers` gives, in the same order, as ``"name: value"`` lines;
    None where :attr:`Message.headers` names one of the attribute headers (which
    :func:`to_headers` then overrides in place: ask it).

    For bindings that write header lines themselves (NATS): no dict is built, no name
    and value are taken apart again.
    """
    extra = message.headers
    if extra and not header_attributes(prefix).keys().isdisjoint(extra):
        return None
    values = msgspec.structs.astuple(message)
    lines: list[str] = []
    for index, head, is_time in _heads(prefix):
        value = values[index]
        if value is not None:
            lines.append(head + (_format_time(value) if is_time else value))
    lines.append("content-type: " + message.datacontenttype)
    if extra:
        lines += map(": ".join, extra.items())
    return lines


def from_attributes(attrs: dict[str, Any], extra: dict[str, str], body: bytes) -> Message | None:
    """The message of attribute values sorted from the other headers as :func:`from_headers`
    sorts them (``attrs`` by attribute name, times still as text, ``extra`` by header name),
    or None where :func:`from_headers` would refuse them (ask it for the error).

    ``attrs`` is changed (its times parsed).
    """
    try:
        return _checked(attrs, extra, body, "", ())
    except DecodeError:
        return None


def from_headers(
    headers: dict[str, str], body: bytes, prefix: str = "ce-", *, percent_encoded: bool = False
) -> Message:
    """Rebuild a message from binary-mode headers and body; header names are case-blind.

    ``percent_encoded`` unescapes attribute values as the HTTP binding requires.
    """
    attrs: dict[str, Any] = {}
    extra: dict[str, str] = {}
    plen = len(prefix)
    lower_prefix = prefix.lower()
    exact = _read(prefix)
    for key, value in headers.items():
        name = exact.get(key)  # as written by to_headers: no lowering, no slicing
        if name is None:
            lower = key.lower()
            if lower == "content-type":
                attrs["datacontenttype"] = value
                continue
            name = lower[plen:] if lower.startswith(lower_prefix) else None
            if name not in _KNOWN:
                extra[key] = value
                continue
        attrs[name] = _unescape(key, value) if percent_encoded else value
    return _checked(attrs, extra, body, prefix, headers)


def _checked(
    attrs: dict[str, Any], extra: dict[str, str], body: bytes, prefix: str, names: Iterable[str]
) -> Message:
    """The message of sorted attributes, refused as :func:`from_headers` refuses them;
    ``names`` are the headers present, for the error."""
    for name in _REQUIRED_ATTRS:
        if not attrs.get(name):
            raise DecodeError(
                f"required CloudEvents header {prefix + name!r} is missing or empty; "
                f"headers present: {sorted(names)}"
            )
    if attrs["specversion"] != "1.0":
        raise DecodeError(
            f"header {prefix}specversion = {attrs['specversion']!r}: only CloudEvents 1.0 is read"
        )
    if attrs.get("kind", "event") not in _KINDS:
        raise DecodeError(f"header {prefix}kind = {attrs['kind']!r} is not one of {sorted(_KINDS)}")
    for name in ("time", "deadline"):
        if name in attrs:
            attrs[name] = _parse_time(prefix + name, attrs[name])
    return Message(data=body, headers=extra, **attrs)


_envelope_encoder = msgspec.msgpack.Encoder()
_envelope_decoder = msgspec.msgpack.Decoder(Message)


encode_message: Callable[[Message], bytes] = _envelope_encoder.encode
"""The whole envelope as one MessagePack frame (storage and in-process wire form).

msgspec's encode itself, not a function calling it: every publish makes a frame."""

encode_message_into: Callable[[Message, bytearray], None] = _envelope_encoder.encode_into
""":func:`encode_message` into a buffer the caller reuses (it is resized to the frame)."""

decode_message_raw: Callable[[bytes], Message] = _envelope_decoder.decode
""":func:`decode_message` raising msgspec's own errors, for loops that catch them once
and ask :func:`decode_message` for the error to show."""


def decode_message(frame: bytes) -> Message:
    """Inverse of :func:`encode_message`; a broken frame raises :class:`DecodeError`."""
    try:
        return _envelope_decoder.decode(frame)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise DecodeError(f"message frame of {len(frame)} bytes does not decode: {exc}") from exc
