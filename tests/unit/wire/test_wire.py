"""Tests for the sans-IO wire protocol: frames, the frame reader, heartbeats, pipelining.

The property tests draw arbitrary valid frames and arbitrary ways of cutting
the byte stream into chunks; the fuzz tests feed random and corrupted bytes
and check that the reader only ever fails with ProtocolError and never holds
more than one frame's worth of bytes. Time is plain floats: nothing sleeps.
"""

from __future__ import annotations

import gc
import itertools
import math
import struct
import weakref
from typing import get_args

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from seawall import (
    ChannelFull,
    ChannelSpec,
    ConnectionLost,
    Message,
    MessageTooLarge,
    PermissionDenied,
    ProtocolError,
    TransportError,
)
from seawall._messages.envelope import decode_message, encode_message
from seawall._wire.protocol import (
    MAX_HELLO,
    MAX_TOKEN,
    PROTOCOL_VERSION,
    Ack,
    Acks,
    Credit,
    Declare,
    Delete,
    Deliver,
    Error,
    ErrorCode,
    Frame,
    FrameReader,
    Goodbye,
    Hello,
    Nack,
    Ok,
    Oks,
    Ping,
    Pong,
    Publish,
    Subscribe,
    Unsubscribe,
    Welcome,
    encode_frame,
    encode_frame_into,
)
from seawall._wire.state import Heartbeat, Pipeline

ENVELOPE = encode_message(Message(id="m-1", type="orders.OrderCreated", source="orders"))

EXAMPLES: list[Frame] = [
    Hello(PROTOCOL_VERSION, "orders-1", heartbeat=5.0, token="s3cret", batched=True),
    Welcome(
        1,
        "seawall/0.1.0",
        max_frame=1 << 22,
        max_message=1 << 20,
        heartbeat=5.0,
        group_expiry=True,
        batched=True,
    ),
    Declare(1, "orders", partitions=4, max_messages=1000, ephemeral=False),
    Publish(2, "orders", ENVELOPE, not_before=1_800_000_000.5),
    Subscribe(3, "orders", "billing", prefetch=16, start="latest", idle_expiry=300.0),
    Unsubscribe(4, subscription=7),
    Delete(5, "orders", group="billing"),
    Credit(7, 3),
    Deliver(7, partition=2, offset=41, attempt=1, message=ENVELOPE),
    Ack(7, 2, 41),
    Acks(7, (43, 44, 45)),
    Nack(7, 2, 42, delay=1.5),
    Ok(3, result=7),
    Oks((6, 8, 9)),
    Error(2, "permission-denied", "token 'ci' may not publish to 'orders'"),
    Ping(),
    Pong(),
    Goodbye("shutting down"),
]

# -- strategies -----------------------------------------------------------------

counts = st.integers(0, 2**63 - 1)
positives = st.integers(1, 2**31)
names = st.text(min_size=1, max_size=12)
seconds = st.floats(0.0, 1e11)
intervals = st.floats(0.0, 3600.0, exclude_min=True)
payloads = st.binary(max_size=64)
codes = st.sampled_from(get_args(ErrorCode))

frames: st.SearchStrategy[Frame] = st.one_of(
    st.builds(Hello, positives, names, intervals, st.none() | st.text(max_size=12)),
    st.builds(
        Welcome,
        positives,
        st.text(max_size=12),
        positives,
        positives,
        intervals,
        st.sampled_from(["memory", "written", "local-fsync", "replicated"]),
        st.booleans(),
    ),
    st.builds(Declare, counts, names, st.integers(1, 1024), positives, st.booleans()),
    st.builds(Publish, counts, names, payloads, st.none() | seconds),
    st.builds(
        Subscribe,
        counts,
        names,
        names,
        st.integers(1, 65_536),
        st.sampled_from(["earliest", "latest"]),
    ),
    st.builds(Unsubscribe, counts, counts),
    st.builds(Delete, counts, names, st.none() | names),
    st.builds(Credit, counts, st.integers(1, 65_536)),
    st.builds(Deliver, counts, counts, counts, positives, payloads),
    st.builds(Ack, counts, counts, counts),
    st.builds(Acks, counts, st.lists(counts, max_size=8).map(tuple)),
    st.builds(Nack, counts, counts, counts, seconds),
    st.builds(Ok, counts, st.none() | counts),
    st.builds(Oks, st.lists(counts, max_size=8).map(tuple)),
    st.builds(Error, st.none() | counts, codes, st.text(max_size=24)),
    st.builds(Ping),
    st.builds(Pong),
    st.builds(Goodbye, st.text(max_size=12)),
)


def chunked(data: bytes, cuts: list[int]) -> list[bytes]:
    """``data`` cut at the given positions (any order, duplicates allowed)."""
    points = [0, *sorted(c % (len(data) + 1) for c in cuts), len(data)]
    return [data[a:b] for a, b in itertools.pairwise(points)]


def read_all(reader: FrameReader, chunks: list[bytes]) -> list[Frame]:
    got: list[Frame] = []
    for chunk in chunks:
        got.extend(reader.feed(chunk))
    return got


def framed(body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + body


# -- frames -----------------------------------------------------------------------


def test_examples_cover_every_frame_type() -> None:
    assert {type(f) for f in EXAMPLES} == set(get_args(Frame))


@pytest.mark.parametrize("frame", EXAMPLES, ids=lambda f: type(f).__name__)
def test_every_frame_type_round_trips(frame: Frame) -> None:
    data = encode_frame(frame)
    assert FrameReader().feed(data) == [frame]


@pytest.mark.parametrize("frame", EXAMPLES, ids=lambda f: type(f).__name__)
def test_layout_is_length_then_array_led_by_the_op(frame: Frame) -> None:
    data = encode_frame(frame)
    (length,) = struct.unpack(">I", data[:4])
    assert length == len(data) - 4
    body = msgspec.msgpack.decode(data[4:])
    assert isinstance(body, list)
    assert body[0] == frame.__struct_config__.tag


def test_trailing_fields_with_defaults_may_be_left_out() -> None:
    body = msgspec.msgpack.encode(["subscribe", 9, "orders", "billing"])
    assert FrameReader().feed(framed(body)) == [Subscribe(9, "orders", "billing", 64, "earliest")]


def test_unknown_trailing_fields_are_ignored() -> None:
    body = msgspec.msgpack.encode(["ack", 1, 0, 0, "from a later version"])
    assert FrameReader().feed(framed(body)) == [Ack(1, 0, 0)]


def test_publish_and_deliver_carry_the_envelope_frame() -> None:
    (publish,) = FrameReader().feed(encode_frame(EXAMPLES[3]))
    assert isinstance(publish, Publish)
    assert decode_message(publish.message).type == "orders.OrderCreated"


def test_declare_maps_to_and_from_a_channel_spec() -> None:
    spec = ChannelSpec(
        name="orders",
        partitions=8,
        max_messages=50,
        ephemeral=True,
        sync_requests=False,
        requests="direct",
    )
    declare = Declare.of(5, spec)
    assert declare.seq == 5
    assert declare.spec() == spec


@given(frames)
@settings(max_examples=200, deadline=None)
def test_any_frame_round_trips(frame: Frame) -> None:
    assert FrameReader().feed(encode_frame(frame)) == [frame]


def test_encode_refuses_a_frame_over_the_peers_limit() -> None:
    with pytest.raises(ProtocolError, match=r"Publish frame of \d+ bytes exceeds .* 16") as info:
        encode_frame(Publish(1, "orders", b"x" * 64), max_frame=16)
    assert info.value.code == "too-large"


# -- the frame reader ---------------------------------------------------------------


def test_every_split_point_of_a_stream_gives_the_same_frames() -> None:
    stream = b"".join(encode_frame(f) for f in EXAMPLES)
    for cut in range(len(stream) + 1):
        assert read_all(FrameReader(), [stream[:cut], stream[cut:]]) == EXAMPLES, cut


def test_byte_at_a_time_gives_the_same_frames() -> None:
    stream = b"".join(encode_frame(f) for f in EXAMPLES)
    reader = FrameReader()
    assert read_all(reader, [stream[i : i + 1] for i in range(len(stream))]) == EXAMPLES
    assert reader.buffered == 0


@given(st.lists(frames, max_size=8), st.lists(st.integers(0, 10_000), max_size=12))
@settings(max_examples=150, deadline=None)
def test_any_chunking_gives_the_same_frames(sent: list[Frame], cuts: list[int]) -> None:
    stream = b"".join(encode_frame(f) for f in sent)
    reader = FrameReader()
    assert read_all(reader, chunked(stream, cuts)) == sent
    assert reader.buffered == 0


def test_reader_accepts_bytearray_and_memoryview_and_leaves_them_resizable() -> None:
    stream = bytearray(encode_frame(Ping()) + encode_frame(Pong())[:3])
    reader = FrameReader()
    assert reader.feed(memoryview(stream)) == [Ping()]
    stream.extend(b"more")  # no export of the caller's buffer outlives feed()
    assert reader.feed(bytearray(encode_frame(Pong())[3:])) == [Pong()]


def test_a_frame_of_exactly_max_frame_is_accepted() -> None:
    body = encode_frame(Goodbye("x" * 100))[4:]
    assert FrameReader(max_frame=len(body)).feed(framed(body)) == [Goodbye("x" * 100)]


def test_oversize_length_is_refused_before_the_body_arrives() -> None:
    reader = FrameReader(max_frame=1024)
    assert reader.feed(b"\x00\x00") == []
    with pytest.raises(ProtocolError, match=r"announces 4096 bytes.*max_frame of 1024") as info:
        reader.feed(b"\x10\x00")  # the rest of the header; no body byte sent yet
    assert info.value.code == "too-large"
    assert reader.buffered == 0


def test_oversize_length_in_one_chunk_keeps_nothing() -> None:
    reader = FrameReader(max_frame=10)
    with pytest.raises(ProtocolError, match=r"announces 11 bytes"):
        reader.feed(encode_frame(Ping()) + struct.pack(">I", 11) + b"\x00" * 11)
    assert reader.buffered == 0


@pytest.mark.parametrize(
    ("body", "hint"),
    [
        (b"", "truncated"),
        (b"\xc1", ""),
        (msgspec.msgpack.encode(["launch", 1]), "launch"),
        (msgspec.msgpack.encode({"op": "ping"}), "array"),
        (msgspec.msgpack.encode(["credit", 1, 0]), ">= 1"),
        (msgspec.msgpack.encode(["declare", 1, "orders", 5000]), "<= 1024"),
        (msgspec.msgpack.encode(["nack", 1, 0, 0, math.nan]), ">= 0"),
        (msgspec.msgpack.encode(["nack", 1, 0, 0, math.inf]), "<= "),
        (msgspec.msgpack.encode(["error", None, "oops", "x"]), "oops"),
        (msgspec.msgpack.encode(["subscribe", 1, "", "g"]), "length >= 1"),
    ],
)
def test_a_body_that_does_not_decode_is_malformed(body: bytes, hint: str) -> None:
    with pytest.raises(ProtocolError, match="not a valid seawall frame") as info:
        FrameReader().feed(framed(body))
    assert info.value.code == "malformed"
    assert hint in str(info.value)


def test_reader_is_poisoned_after_an_error() -> None:
    reader = FrameReader()
    with pytest.raises(ProtocolError):
        reader.feed(framed(b"\xc1") + encode_frame(Ping()))
    for data in (b"", encode_frame(Ping())):
        with pytest.raises(ProtocolError, match=r"earlier error.*close this connection") as info:
            reader.feed(data)
        assert info.value.code == "malformed"


def test_a_poisoned_reader_is_freed_without_the_garbage_collector() -> None:
    """Its error is kept without a traceback: one would refer back to the reader (a cycle),
    and a broken connection's buffers would wait for the collector's next full pass."""
    reader = FrameReader()
    gone = weakref.ref(reader)
    gc.disable()
    try:
        with pytest.raises(ProtocolError):
            reader.feed(framed(b"\xc1"))
        del reader
        assert gone() is None
    finally:
        gc.enable()


def test_wanted_reads_one_frame_and_not_a_byte_more() -> None:
    stream = encode_frame(Hello(PROTOCOL_VERSION, "orders-1")) + encode_frame(Ping())
    reader, pos, got = FrameReader(max_frame=MAX_HELLO), 0, []
    while not got:
        wanted = reader.wanted()
        got = reader.feed(stream[pos : pos + wanted])
        pos += wanted
    assert got == [Hello(PROTOCOL_VERSION, "orders-1")]
    assert stream[pos:] == encode_frame(Ping())  # left for whoever reads next
    assert reader.wanted() == 4


def test_wanted_refuses_a_long_announcement_before_its_body() -> None:
    reader = FrameReader(max_frame=MAX_HELLO)
    with pytest.raises(ProtocolError, match=f"announces {MAX_HELLO + 1} bytes") as info:
        reader.feed(struct.pack(">I", MAX_HELLO + 1))
    assert info.value.code == "too-large"


def test_the_largest_hello_fits_the_limit_before_welcome() -> None:
    hello = Hello(PROTOCOL_VERSION, "\U0001f600" * 255, 3600.0, "\u00e9" * (MAX_TOKEN // 2))
    assert len(encode_frame(hello)) - 4 <= MAX_HELLO


def test_protocol_error_is_a_transport_error_with_a_code() -> None:
    error = ProtocolError("bad-request", "no")
    assert isinstance(error, TransportError)
    assert (error.code, str(error)) == ("bad-request", "no")


# -- fuzz -------------------------------------------------------------------------

FUZZ_MAX = 256


def feed_fuzz(reader: FrameReader, chunks: list[bytes]) -> None:
    """Feed until the reader refuses; only ProtocolError may escape, memory stays bounded."""
    for chunk in chunks:
        try:
            reader.feed(chunk)
        except ProtocolError:
            assert reader.buffered == 0
            return
        assert reader.buffered <= 4 + FUZZ_MAX


@given(st.binary(max_size=2048), st.lists(st.integers(0, 4096), max_size=16))
@settings(max_examples=200, deadline=None)
def test_fuzz_random_bytes_only_raise_protocol_error(data: bytes, cuts: list[int]) -> None:
    feed_fuzz(FrameReader(max_frame=FUZZ_MAX), chunked(data, cuts))


@given(
    st.lists(frames, min_size=1, max_size=6),
    st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), min_size=1, max_size=4),
    st.lists(st.integers(0, 10_000), max_size=8),
)
@settings(max_examples=200, deadline=None)
def test_fuzz_corrupted_streams_only_raise_protocol_error(
    sent: list[Frame], flips: list[tuple[int, int]], cuts: list[int]
) -> None:
    stream = bytearray(b"".join(encode_frame(f) for f in sent))
    for at, value in flips:
        stream[at % len(stream)] = value
    feed_fuzz(FrameReader(max_frame=FUZZ_MAX), chunked(bytes(stream), cuts))


scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**63), 2**64 - 1),
    st.floats(),
    st.text(max_size=8),
    st.binary(max_size=8),
)
msgpack_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=4), inner, max_size=3)
    ),
    max_leaves=8,
)
ops = st.sampled_from([t.__struct_config__.tag for t in get_args(Frame)]) | st.text(max_size=6)


@given(st.lists(st.tuples(ops, st.lists(msgpack_values, max_size=6)), min_size=1, max_size=4))
@settings(max_examples=150, deadline=None)
def test_fuzz_random_fields_under_real_ops_only_raise_protocol_error(
    bodies: list[tuple[str, list[object]]],
) -> None:
    stream = b"".join(framed(msgspec.msgpack.encode([op, *fields])) for op, fields in bodies)
    feed_fuzz(FrameReader(max_frame=FUZZ_MAX), [stream])


# -- heartbeat --------------------------------------------------------------------


def test_heartbeat_pings_a_quiet_peer_each_interval_then_gives_up() -> None:
    beat = Heartbeat(interval=10.0, now=100.0)
    assert not beat.due(109.9)
    assert beat.due(110.0)
    beat.pinged(110.0)
    assert not beat.due(115.0)
    assert beat.wake_at() == 120.0
    assert beat.due(120.0)
    beat.pinged(120.0)
    assert not beat.dead(129.9)
    assert beat.wake_at() == 130.0
    assert beat.dead(130.0)


def test_heartbeat_any_frame_received_resets_the_clock() -> None:
    beat = Heartbeat(interval=10.0, now=0.0)
    beat.pinged(10.0)
    beat.received(25.0)
    assert not beat.due(34.0)
    assert not beat.dead(54.0)
    assert beat.dead(55.0)
    beat.received(20.0)  # an older timestamp never moves the clock back
    assert beat.dead(55.0)


@pytest.mark.parametrize(("interval", "misses"), [(0.0, 3), (-1.0, 3), (math.nan, 3), (1.0, 0)])
def test_heartbeat_refuses_intervals_that_cannot_work(interval: float, misses: int) -> None:
    with pytest.raises(ValueError, match="heartbeat needs"):
        Heartbeat(interval, now=0.0, misses=misses)


# -- pipeline ---------------------------------------------------------------------


def test_pipeline_answers_may_come_in_any_order() -> None:
    pipe: Pipeline[str] = Pipeline()
    seqs = [pipe.next_seq() for _ in range(3)]
    assert seqs == [0, 1, 2]
    for seq in seqs:
        pipe.expect(seq, f"waiter-{seq}")
    assert len(pipe) == 3
    assert pipe.resolve(Error(2, "unknown-channel", "no channel 'x'")) == "waiter-2"
    assert pipe.resolve(Ok(0, result=5)) == "waiter-0"
    assert pipe.abandon() == ["waiter-1"]
    assert len(pipe) == 0


def test_pipeline_refuses_an_answer_nobody_waits_for() -> None:
    pipe: Pipeline[int] = Pipeline()
    pipe.expect(pipe.next_seq(), 0)
    assert pipe.resolve(Ok(0)) == 0
    for answer in (Ok(0), Error(9, "internal", "boom")):
        with pytest.raises(ProtocolError, match="no request waits for") as info:
            pipe.resolve(answer)
        assert info.value.code == "bad-request"


def test_pipeline_connection_level_error_raises_its_code() -> None:
    pipe: Pipeline[None] = Pipeline()
    pipe.expect(pipe.next_seq(), None)
    with pytest.raises(ProtocolError, match=r"ended the connection.*slow down") as info:
        pipe.resolve(Error(None, "too-large", "slow down"))
    assert info.value.code == "too-large"


def test_pipeline_is_bounded_and_refuses_duplicate_seqs() -> None:
    pipe: Pipeline[None] = Pipeline(limit=2)
    pipe.expect(0, None)
    with pytest.raises(ProtocolError, match="already waiting"):
        pipe.expect(0, None)
    pipe.expect(1, None)
    assert pipe.full
    with pytest.raises(ProtocolError, match="2 requests already wait"):
        pipe.expect(2, None)


# -- errors as exceptions ---------------------------------------------------------


def test_error_frames_become_the_matching_exception() -> None:
    assert isinstance(Error(1, "permission-denied", "no").exception(), PermissionDenied)
    assert isinstance(Error(1, "too-large", "big").exception(), MessageTooLarge)
    frame_level = Error(None, "too-large", "big").exception()
    assert isinstance(frame_level, ProtocolError)
    assert frame_level.code == "too-large"
    assert isinstance(Error(1, "channel-full", "full").exception(), ChannelFull)
    assert isinstance(Error(None, "unavailable", "full").exception(), ConnectionLost)
    other = Error(1, "unknown-channel", "no channel 'x'").exception()
    assert isinstance(other, ProtocolError)
    assert (other.code, str(other)) == ("unknown-channel", "no channel 'x'")


def test_limits_that_cannot_work_are_refused() -> None:
    with pytest.raises(ValueError, match="max_frame must be"):
        FrameReader(max_frame=0)
    with pytest.raises(ValueError, match="pipeline limit"):
        Pipeline(limit=0)


def test_hello_keeps_its_token_out_of_reprs() -> None:
    hello = Hello(PROTOCOL_VERSION, "orders-1", token="s3cret-token")
    assert "s3cret-token" not in repr(hello)
    assert "s3cret-token" not in f"{hello}"
    assert "orders-1" in repr(hello)


def test_a_frame_over_the_limit_leaves_the_buffer_as_it_was() -> None:
    buffer = bytearray(b"earlier frames")
    encode_frame_into(Ping(), buffer)
    with pytest.raises(ProtocolError, match="exceeds the peer's max_frame of 16"):
        encode_frame_into(Publish(1, "orders", b"x" * 64), buffer, max_frame=16)
    assert buffer == b"earlier frames" + encode_frame(Ping())


def test_broker_errors_become_error_frames_and_back() -> None:
    for exc in (ChannelFull("full"), MessageTooLarge("big"), PermissionDenied("no")):
        error = Error.of(3, exc)
        assert error is not None
        assert type(error.exception()) is type(exc)
        assert (error.seq, error.message) == (3, str(exc))
    assert Error.of(3, ProtocolError("unknown-channel", "x")) == Error(3, "unknown-channel", "x")
    assert Error.of(None, ProtocolError("made-up", "x")) == Error(None, "internal", "x")
    assert Error.of(3, RuntimeError("bug")) is None  # the caller logs it and says "internal"
