"""Tests for the message envelope: MessagePack frames and binary-mode headers.

The property tests draw arbitrary valid messages and check that nothing is
lost on either wire form; the example tests pin down what a reader is told
when headers or frames are broken.
"""

from __future__ import annotations

import random
import re
import string
from datetime import UTC, datetime

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from seawall import DecodeError, Message, MessageError, from_headers, to_headers
from seawall._messages.envelope import decode_message, encode_message

PREFIXES = ("ce-", "ce_", "cloudEvents:")
_RFC3339_UTC = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{6})?Z$")
_STRING_ATTRS = (
    "dataschema",
    "subject",
    "correlationid",
    "causationid",
    "replyto",
    "partitionkey",
    "traceparent",
    "tracestate",
)
_TIME_ATTRS = ("time", "deadline")


def _is_foreign_header(name: str) -> bool:
    lower = name.lower()
    return lower != "content-type" and not lower.startswith(tuple(p.lower() for p in PREFIXES))


_texts = st.text(max_size=24)
_header_names = st.text(string.ascii_letters + string.digits + "-_.:", min_size=1, max_size=20)
_foreign_headers = st.lists(
    st.tuples(_header_names.filter(_is_foreign_header), _texts),
    max_size=4,
    unique_by=lambda item: item[0].lower(),
).map(dict)
_utc_times = st.datetimes(timezones=st.just(UTC))

messages = st.builds(
    Message,
    id=st.text(min_size=1, max_size=24),
    type=st.text(min_size=1, max_size=24),
    source=st.text(min_size=1, max_size=24),
    time=st.none() | _utc_times,
    data=st.binary(max_size=64),
    kind=st.sampled_from(["command", "event", "document"]),
    datacontenttype=st.sampled_from(["application/json", "application/msgpack"]) | _texts,
    deadline=st.none() | _utc_times,
    headers=_foreign_headers,
    **{name: st.none() | _texts for name in _STRING_ATTRS},
)
"""Any message that the header mapping can carry: CloudEvents 1.0, non-empty required attributes."""


def _scramble_case(name: str, rnd: random.Random) -> str:
    return "".join(rnd.choice((str.upper, str.lower))(char) for char in name)


def _valid_headers(prefix: str = "ce-") -> dict[str, str]:
    message = Message(
        id="m-1",
        type="orders.CreateOrder",
        source="/orders",
        time=datetime(2026, 1, 31, 12, 0, tzinfo=UTC),
        kind="command",
    )
    return to_headers(message, prefix)


# --- round trips ------------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(messages)
def test_envelope_frame_round_trips(message: Message) -> None:
    frame = encode_message(message)
    assert isinstance(frame, bytes)
    assert decode_message(frame) == message


@settings(max_examples=150, deadline=None)
@given(messages)
def test_headers_round_trip(message: Message) -> None:
    for prefix in PREFIXES:
        headers = to_headers(message, prefix)
        assert from_headers(headers, message.data, prefix) == message, prefix


@settings(max_examples=50, deadline=None)
@given(messages)
def test_headers_carry_only_set_attributes_under_the_prefix(message: Message) -> None:
    for prefix in PREFIXES:
        headers = to_headers(message, prefix)

        assert headers["content-type"] == message.datacontenttype
        for name in ("id", "type", "source", "specversion", "kind"):
            assert headers[prefix + name] == getattr(message, name)
        for name in _STRING_ATTRS:
            assert headers.get(prefix + name) == getattr(message, name), prefix + name
        for name in _TIME_ATTRS:
            value = getattr(message, name)
            assert (prefix + name in headers) == (value is not None), prefix + name
            if value is not None:
                assert _RFC3339_UTC.match(headers[prefix + name]), headers[prefix + name]
        for name, value in message.headers.items():
            assert headers[name] == value
        assert len(headers) == len(set(map(str.lower, headers)))


@settings(max_examples=100, deadline=None)
@given(messages, st.integers(min_value=0))
def test_header_names_are_case_blind_on_read(message: Message, seed: int) -> None:
    rnd = random.Random(seed)
    for prefix in PREFIXES:
        headers = {
            (name if name in message.headers else _scramble_case(name, rnd)): value
            for name, value in to_headers(message, prefix).items()
        }
        assert from_headers(headers, message.data, prefix) == message, headers


def test_upper_case_headers_are_read() -> None:
    headers = {name.upper(): value for name, value in _valid_headers().items()}
    message = from_headers(headers, b"{}")
    assert (message.id, message.kind, message.datacontenttype) == (
        "m-1",
        "command",
        "application/json",
    )
    assert message.headers == {}


def test_time_with_an_offset_reads_back_as_the_same_instant() -> None:
    headers = _valid_headers() | {"ce-time": "2026-01-31T14:30:00.250000+02:00"}
    time = from_headers(headers, b"").time
    assert time == datetime(2026, 1, 31, 12, 30, 0, 250000, tzinfo=UTC)
    assert time is not None
    assert time.utcoffset() is not None


def test_absent_optional_headers_take_the_defaults() -> None:
    headers = {"ce-id": "m-1", "ce-type": "t", "ce-source": "/s", "ce-specversion": "1.0"}
    message = from_headers(headers, b"body")
    assert message == Message(id="m-1", type="t", source="/s", data=b"body")
    assert (message.kind, message.datacontenttype) == ("event", "application/json")


# --- headers seawall does not know --------------------------------------------------------


def test_unknown_headers_are_carried_through_untouched() -> None:
    foreign = {
        "X-Request-Id": "r-17",
        "traceparent": "not ours without the prefix",
        "ce-tenant": "acme",  # an extension seawall does not know
        "ce_id": "under another binding's prefix",
    }
    message = from_headers(_valid_headers() | foreign, b"")

    assert message.headers == foreign
    assert message.id == "m-1"
    assert message.traceparent is None
    assert {name: to_headers(message)[name] for name in foreign} == foreign


# --- broken headers -----------------------------------------------------------------------


@pytest.mark.parametrize("prefix", PREFIXES)
@pytest.mark.parametrize("name", ["id", "type", "source", "specversion"])
def test_missing_required_header_is_named(prefix: str, name: str) -> None:
    headers = _valid_headers(prefix)
    del headers[prefix + name]
    with pytest.raises(DecodeError, match=re.escape(repr(prefix + name))):
        from_headers(headers, b"", prefix)


@pytest.mark.parametrize("name", ["id", "type", "source"])
def test_empty_required_header_is_refused(name: str) -> None:
    headers = _valid_headers() | {f"ce-{name}": ""}
    with pytest.raises(DecodeError, match=f"'ce-{name}' is missing or empty"):
        from_headers(headers, b"")


def test_other_specversion_is_refused() -> None:
    headers = _valid_headers() | {"ce-specversion": "0.3"}
    with pytest.raises(DecodeError, match=r"ce-specversion = '0\.3'.*CloudEvents 1\.0"):
        from_headers(headers, b"")


@pytest.mark.parametrize("name", _TIME_ATTRS)
@pytest.mark.parametrize("text", ["yesterday", "2026-13-01T00:00:00Z", "12:00"])
def test_bad_time_names_the_header_and_value(name: str, text: str) -> None:
    headers = _valid_headers() | {f"ce-{name}": text}
    with pytest.raises(DecodeError, match=re.escape(f"'ce-{name}' = {text!r}")):
        from_headers(headers, b"")


@pytest.mark.parametrize("kind", ["query", "Command", ""])
def test_bad_kind_is_refused(kind: str) -> None:
    headers = _valid_headers() | {"ce-kind": kind}
    with pytest.raises(DecodeError, match=re.escape(f"ce-kind = {kind!r} is not one of")):
        from_headers(headers, b"")


def test_decode_error_is_a_message_error_and_a_value_error() -> None:
    with pytest.raises(DecodeError) as caught:
        from_headers({}, b"")
    assert isinstance(caught.value, MessageError)
    assert isinstance(caught.value, ValueError)


# --- broken frames ------------------------------------------------------------------------


def _frame() -> bytes:
    return encode_message(from_headers(_valid_headers(), b'{"total": 3}'))


@pytest.mark.parametrize(
    "frame",
    [
        pytest.param(b"", id="empty"),
        pytest.param(b"\xc1", id="invalid-opcode"),
        pytest.param(_frame()[:-1], id="truncated"),
        pytest.param(msgspec.msgpack.encode(["m-1", "t", "/s"]), id="array-not-map"),
        pytest.param(msgspec.msgpack.encode({"id": "m-1", "type": "t"}), id="missing-source"),
        pytest.param(
            msgspec.msgpack.encode({"id": "m-1", "type": "t", "source": "/s", "kind": "query"}),
            id="bad-kind",
        ),
        pytest.param(
            msgspec.msgpack.encode({"id": "m-1", "type": "t", "source": "/s", "time": "never"}),
            id="bad-time",
        ),
    ],
)
def test_broken_frame_raises_decode_error(frame: bytes) -> None:
    with pytest.raises(DecodeError, match=f"message frame of {len(frame)} bytes does not decode"):
        decode_message(frame)


def test_frame_omits_default_attributes() -> None:
    small = encode_message(Message(id="m-1", type="t", source="/s"))
    assert msgspec.msgpack.decode(small) == {"id": "m-1", "type": "t", "source": "/s"}
