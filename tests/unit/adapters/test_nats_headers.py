"""Our reader of NATS header blocks returns exactly what nats-py's own returns, and a
plain message read from its block equals the one read from what nats-py returns."""

from __future__ import annotations

import asyncio

from hypothesis import given, settings
from hypothesis import strategies as st
from nats.aio.client import Client

from seawall._exceptions import DecodeError
from seawall._messages.envelope import Message, from_headers
from seawall.transports.nats._headers import install, parse_header_lines, read_message

_pieces = st.sampled_from(
    [b"ce-id", b"ce-type", b" x-pad ", b"a b", b"n\xc3\xa9", b"", b"\xff", b"\t", b"k\x1cx"]
)
_values = st.binary(max_size=12) | st.sampled_from([b" v ", b"caf\xc3\xa9", b"\xff\xfe"])
_lines = st.tuples(_pieces, st.sampled_from([b":", b": ", b""]), _values).map(b"".join)
_blocks = st.lists(_lines | st.just(b""), max_size=8).map(b"\r\n".join)


@given(_blocks)
@settings(max_examples=400, deadline=None)
def test_a_header_block_reads_as_nats_py_reads_it(raw: bytes) -> None:
    assert parse_header_lines(raw) == Client._parse_header_lines(raw)
    assert parse_header_lines(raw) == Client._parse_header_lines(raw)  # names remembered


def test_installing_on_a_client_replaces_its_parser_only() -> None:
    client, other = Client(), Client()
    install(client)
    assert client._parse_header_lines is parse_header_lines
    assert other._parse_header_lines is not parse_header_lines


# -- a plain message read from its block as received ------------------------------------

_SEAWALL_LINES = [
    b"ce-id: 0190a0b0-1234-7abc-8def-0123456789ab",
    b"ce-type: bench.Probe",
    b"ce-source: bench-client",
    b"ce-specversion: 1.0",
    b"ce-time: 2026-01-31T12:00:00.123000Z",
    b"ce-kind: command",
    b"ce-deadline: 2026-01-31T12:00:30Z",
    b"content-type: application/json",
]
_ODD_LINES = [
    b"ce-id: other",  # a repeat: the last one counts
    b"CE-Type: shouted",
    b" ce-source : padded",
    b"ce-specversion: 0.3",
    b"ce-kind: gossip",
    b"ce-time: yesterday",
    b"ce-deadline: 2026-01-31T12:00:30+02:00",
    b"ce-dataschema:",
    b"ce-other: an extension",
    b"x-trace: \xc3\xa9t\xc3\xa9 ",
    b"x-bad name: skipped",
    b"n\xc3\xa9: skipped",
    b"\xff: not utf-8",
    b"no colon",
    b"seawall-retry: 2",
    b"x-feed: v\x0c",
    b"ce-subject: \x0bpadded\x0c",
    b"",
]
_seawall_blocks = st.lists(
    st.sampled_from(_SEAWALL_LINES) | st.sampled_from(_ODD_LINES), max_size=12
).map(lambda lines: b"NATS/1.0\r\n" + b"\r\n".join(lines) + b"\r\n\r\n")
_status_blocks = st.sampled_from(
    [
        b"NATS/1.0 503\r\n\r\n",
        b"NATS/1.0 100 Idle Heartbeat\r\nce-id: 1\r\n\r\n",
        b"NATS/1.0\r\n\r\n",
    ]
)


async def _nats_py_reads(block: bytes) -> dict[str, str] | None:
    client = Client()
    install(client)
    return await client._process_headers(block)


@given(st.permutations(_SEAWALL_LINES) | st.just([]), _seawall_blocks | _status_blocks)
@settings(max_examples=400, deadline=None)
def test_a_plain_message_reads_from_its_block_as_from_what_nats_py_reads(
    ordered: list[bytes], odd: bytes
) -> None:
    written = b"NATS/1.0\r\n" + b"\r\n".join(ordered) + b"\r\n\r\n"
    for block in (written, odd):
        headers = asyncio.run(_nats_py_reads(block))
        try:
            expected: Message | None = from_headers(headers or {}, b"{}")
        except DecodeError:
            expected = None
        got = read_message(block, b"{}")
        if got is not None:  # None: the generic path reads it (and decides)
            assert got == expected, block
    if ordered:  # as seawall writes them, in any order: never the generic path
        assert read_message(written, b"{}") is not None


def test_a_block_seawall_writes_is_read_without_the_generic_path() -> None:
    block = b"NATS/1.0\r\n" + b"\r\n".join([*_SEAWALL_LINES, b"x-trace: 1"]) + b"\r\n\r\n"
    message = read_message(block, b"{}")
    assert message is not None
    assert (message.id, message.kind, message.headers) == (
        "0190a0b0-1234-7abc-8def-0123456789ab",
        "command",
        {"x-trace": "1"},
    )
