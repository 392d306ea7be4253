"""Our reader of NATS header blocks returns exactly what nats-py's own returns."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from nats.aio.client import Client

from seawall.transports.nats._headers import install, parse_header_lines

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
