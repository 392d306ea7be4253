"""header_lines gives to_headers' headers as lines, from_attributes builds what from_headers
builds, and times are written as they were before msgspec wrote them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from seawall import DecodeError, Message, from_headers, to_headers
from seawall._messages.envelope import _format_time, from_attributes, header_lines

_text = st.text(max_size=6)
_times = st.datetimes(timezones=st.sampled_from([UTC, timezone(timedelta(hours=-3))]))
_messages = st.builds(
    Message,
    id=st.text(min_size=1, max_size=6),
    type=st.just("a.B"),
    source=st.just("s"),
    time=st.none() | _times,
    kind=st.sampled_from(["command", "event", "document"]),
    subject=st.none() | _text,
    deadline=st.none() | _times,
    headers=st.dictionaries(st.sampled_from(["x-a", "ce-id", "content-type", "CE-ID"]), _text),
)


@given(_messages)
@settings(max_examples=300, deadline=None)
def test_header_lines_are_to_headers_in_order_unless_an_extra_overrides(message: Message) -> None:
    lines = header_lines(message)
    overridden = {"ce-id", "content-type"} & set(message.headers)
    assert (lines is None) == bool(overridden)
    if lines is not None:
        assert lines == [f"{k}: {v}" for k, v in to_headers(message).items()]


@given(_times | st.datetimes())
@settings(max_examples=300, deadline=None)
def test_a_time_is_written_as_isoformat_in_utc_with_z(value: datetime) -> None:
    utc = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    assert _format_time(value) == utc.replace(tzinfo=None).isoformat() + "Z"


@given(
    st.dictionaries(
        st.sampled_from(["id", "type", "source", "specversion", "kind", "time", "deadline"]),
        st.sampled_from(["", "x", "1.0", "0.3", "command", "gossip", "2026-01-31T12:00:00Z"]),
    )
)
@settings(max_examples=300, deadline=None)
def test_from_attributes_builds_what_from_headers_builds_or_none(attrs: dict[str, Any]) -> None:
    headers = {f"ce-{name}": value for name, value in attrs.items()}
    try:
        expected: Message | None = from_headers(headers, b"{}")
    except DecodeError:
        expected = None
    assert from_attributes(dict(attrs), {}, b"{}") == expected
