"""The wire protocol between ``seawall://`` clients and the broker server, sans-IO.

This docstring is the protocol's specification; the module is its only
implementation. Nothing here touches a socket, an event loop or a clock: it is
fed bytes and ``now`` and hands back frames and decisions. The broker server
and the client transport are thin asyncio code around it.

Frames
    A frame is a 4-byte big-endian unsigned length, then that many bytes of
    MessagePack body. The body is an array: the operation name (``op``) first,
    then the frame's fields in the order the classes below declare them; a
    sender may leave out trailing fields that have defaults, and a receiver
    ignores trailing fields it does not know (a later version may add some).
    Messages travel inside Publish and Deliver as the envelope's own
    MessagePack frame (:func:`~seawall._messages.envelope.encode_message`), opaque to
    the framing.

Handshake
    The client's first frame is Hello: the protocol version it speaks, its
    token (or none), a client name for logs, and the heartbeat interval it
    would like. The server answers Welcome (the version both will speak, its
    software name, its ``max_frame`` and ``max_message`` limits, and the
    heartbeat interval both ends use from then on, then what the broker
    behind it offers: the durability a publish's Ok promises, and whether it
    has partitions, delayed redelivery and delayed delivery; these trailing
    fields default to ``"memory"`` and true), or
    ``Error(None, "unsupported-version" | "permission-denied")`` and closes.
    The heartbeat interval is the shorter of the client's wish and the
    server's own. The Welcome's ``max_frame`` bounds frames both ways: the
    client accepts frames that long too.

    Until it has sent Welcome the server trusts nothing: it reads exactly one
    frame, which must be a Hello of at most :data:`MAX_HELLO` bytes; a longer
    announced length ends the connection (``too-large``) before any of the
    body is read, and so does anything but Hello (``bad-request``). A client
    sends nothing more until Welcome arrives; bytes it sent anyway are read
    as frames after Welcome. The server gives a new connection a few seconds
    (its ``hello_timeout``, from the accept) to finish the TLS handshake, if
    any, and send Hello; then it closes it without a word. A server at its
    limit of connections (all of them, or this client's) answers
    ``Error(None, "unavailable")`` and closes: try again later.

Pipelining
    Declare, Publish, Subscribe, Unsubscribe and Delete are requests. Each carries a
    ``seq`` the client picks, unique among its unanswered requests, and the
    client may send many before the first answer comes. The server answers
    every request exactly once, with ``Ok(seq)`` or ``Error(seq, code, text)``,
    in any order: a publish is answered once the message is as durable as the
    broker declares, so answers for different channels may overtake each other.
    An Error with a ``seq`` fails that request only; the connection and the
    other requests go on. Subscribe's Ok carries the subscription id that
    every later frame about that subscription names. The server handles
    requests concurrently, so requests sent back to back may also complete
    in any order; a client that needs two publishes stored in order waits for
    the first one's Ok.

Batching
    A client whose Hello says ``batched`` may be answered with ``Oks(seqs)``,
    which stands for ``Ok(seq)`` (no result) for each seq in turn: the server
    gathers the answers ready in one loop turn into one frame. A server whose
    Welcome says ``batched`` takes ``Acks(subscription, offsets)``, which
    stands for one Ack per offset in turn: the client gathers the acks of one
    write into one frame, sent before any later frame of its own. Peers that
    predate these fields omit them, and so get single frames.

Credit flow
    The server sends Deliver for a subscription only while it holds credit
    for it, and each Deliver spends one. Subscribe opens with credit equal to
    its ``prefetch``; the client grants more with ``Credit(subscription, n)``,
    as a rule one for each delivery it settles, batched. Apart from credit,
    the server never has more than ``prefetch`` deliveries of a subscription
    unsettled, so a client that grants too much still keeps its bound. Ack and
    Nack settle a delivery, named by subscription, partition and offset; they
    get no answer. A Deliver's ``offset`` is the server's handle for that
    delivery, unique among the subscription's unsettled ones (not
    necessarily the message's position in the log). Settling a delivery the
    server no longer holds (returned by Unsubscribe or a broken connection),
    or naming a subscription that is gone, is ignored: that message comes
    again anyway.

Heartbeats
    Any frame received proves the peer alive. After one interval without
    receiving anything, an end sends Ping (again each further quiet interval),
    and the peer answers every Ping with Pong at once. After three quiet
    intervals the end closes the connection; the server then returns that
    client's unsettled deliveries, to come again.

Closing
    Goodbye says its sender will send nothing more; the receiver stops
    sending and closes. A frame longer than the receiver's ``max_frame`` or a
    body that does not decode into a valid frame leaves the rest of the stream
    untrustworthy: the receiver sends ``Error(None, code, text)`` and closes.
    An Error without a ``seq`` always ends the connection.

Error codes
    ``malformed``: a body that does not decode, or a field out of range.
    ``too-large``: a frame over ``max_frame`` (ends the connection) or a
    published message over ``max_message`` (fails that request).
    ``permission-denied``: the token grants no right to this channel or group,
    or the channel is another client's reply inbox (see the broker server's
    :mod:`seawall._server.rights`).
    ``unknown-channel``: the channel does not exist and this request may not
    create it. ``channel-full``: the channel stayed at its bound for the
    broker's whole publish timeout; the message was not stored, retry later.
    ``bad-request``: a well-formed frame that makes no sense here, such as a
    second Hello, a request before Welcome, a server-only frame, or a ``seq``
    already waiting. ``unsupported-version``: the server speaks no
    version the client offered. ``unavailable``: the server takes no more
    connections now (at its ``max_connections``, or the client's); try again
    later. ``internal``: the broker failed; try again.
"""

from __future__ import annotations

import struct
from typing import Annotated, Literal, TypeAlias, cast, get_args

import msgspec

from .._exceptions import (
    ChannelFull,
    ConfigurationError,
    ConnectionLost,
    DecodeError,
    MessageTooLarge,
    PermissionDenied,
    ProtocolError,
    SeawallError,
    TransportClosed,
)
from .._transport import (
    MAX_PRIORITIES,
    ChannelSpec,
    FromOffsets,
    FromTime,
    RequestPath,
    Start,
    StartAt,
)
from .defaults import DEFAULT_HEARTBEAT

__all__ = [
    "DEFAULT_HEARTBEAT",
    "DEFAULT_MAX_FRAME",
    "MAX_HELLO",
    "MAX_TOKEN",
    "PROTOCOL_VERSION",
    "Ack",
    "Acks",
    "Control",
    "Credit",
    "Declare",
    "Delete",
    "Deliver",
    "Error",
    "ErrorCode",
    "Flow",
    "Frame",
    "FrameReader",
    "Goodbye",
    "Hello",
    "Nack",
    "Ok",
    "Oks",
    "Ping",
    "Pong",
    "Publish",
    "Request",
    "Response",
    "Subscribe",
    "Unsubscribe",
    "Welcome",
    "encode_frame",
    "encode_frame_into",
]

PROTOCOL_VERSION = 1
DEFAULT_MAX_FRAME = 4 * 1024 * 1024
MAX_LENGTH = 2**32 - 1
"""The largest length the 4-byte prefix can state."""
MAX_TOKEN = 1024
"""The longest token (UTF-8 bytes) a Hello carries."""
MAX_HELLO = 4096
"""The largest frame a server reads before Welcome: room for a Hello with a 255-character
client name and a token of :data:`MAX_TOKEN` bytes."""

ErrorCode = Literal[
    "malformed",
    "too-large",
    "permission-denied",
    "unknown-channel",
    "channel-full",
    "bad-request",
    "invalid",
    "unsupported-version",
    "unavailable",
    "internal",
]

# Field bounds are checked while decoding, so a peer cannot make the other end
# allocate per its numbers (a million partitions) or compute with NaN times.
Count = Annotated[int, msgspec.Meta(ge=0)]
Positive = Annotated[int, msgspec.Meta(ge=1)]
Partitions = Annotated[int, msgspec.Meta(ge=1, le=1024)]
Prefetch = Annotated[int, msgspec.Meta(ge=1, le=65_536)]
Limit = Annotated[int, msgspec.Meta(ge=1, le=MAX_LENGTH)]
Name = Annotated[str, msgspec.Meta(min_length=1, max_length=255)]
Seconds = Annotated[float, msgspec.Meta(ge=0.0, le=1e11)]
Interval = Annotated[float, msgspec.Meta(gt=0.0, le=3600.0)]
Levels = Annotated[int, msgspec.Meta(ge=1, le=MAX_PRIORITIES)]
DurabilityName = Literal["memory", "written", "local-fsync", "replicated"]
"""The values of :class:`~seawall._transport.Durability`."""


class _Frame(msgspec.Struct, frozen=True, array_like=True, tag_field="op", gc=False):
    """Fields travel as an array after the op name."""


class Hello(_Frame, frozen=True, tag="hello"):
    """Client → server, first frame: who is asking and in which version."""

    version: Positive
    client: Name
    heartbeat: Interval = DEFAULT_HEARTBEAT
    token: str | None = None
    batched: bool = False
    """Whether this client reads Oks frames (a later field: an older client omits it, and
    is answered with one Ok per request)."""

    def __repr__(self) -> str:  # the token is a secret: never in a log line
        token = None if self.token is None else "'***'"
        return (
            f"Hello(version={self.version}, client={self.client!r}, token={token}, "
            f"batched={self.batched})"
        )


class Welcome(_Frame, frozen=True, tag="welcome"):
    """Server → client, answer to Hello: the terms of the connection."""

    version: Positive
    server: str
    max_frame: Limit
    max_message: Limit
    heartbeat: Interval
    durability: DurabilityName = "memory"
    partitions: bool = True
    delayed_redelivery: bool = True
    delayed_delivery: bool = True
    replay: bool = False
    priorities: Levels = 1
    group_expiry: bool = False
    """Whether Subscribe's ``idle_expiry`` is honoured (a later field: an older server
    omits it, and so says no)."""
    batched: bool = False
    """Whether this server reads Acks frames (a later field: an older server omits it, and
    is sent one Ack per delivery)."""


class Declare(_Frame, frozen=True, tag="declare"):
    """Request: create a channel if missing (an existing one is kept as is)."""

    seq: Count
    channel: Name
    partitions: Partitions = 1
    max_messages: Positive = 100_000
    ephemeral: bool = False
    priorities: Levels = 1
    max_age: Seconds | None = None
    max_bytes: Positive | None = None
    sync_requests: bool = True
    requests: RequestPath = "stored"

    @classmethod
    def of(cls, seq: int, spec: ChannelSpec) -> Declare:
        """The request declaring ``spec``."""
        return cls(
            seq,
            spec.name,
            spec.partitions,
            spec.max_messages,
            spec.ephemeral,
            spec.priorities,
            spec.max_age,
            spec.max_bytes,
            spec.sync_requests,
            spec.requests,
        )

    def spec(self) -> ChannelSpec:
        """The channel layout this request asks for."""
        return ChannelSpec(
            name=self.channel,
            partitions=self.partitions,
            max_messages=self.max_messages,
            ephemeral=self.ephemeral,
            priorities=self.priorities,
            max_age=self.max_age,
            max_bytes=self.max_bytes,
            sync_requests=self.sync_requests,
            requests=self.requests,
        )


class Publish(_Frame, frozen=True, tag="publish"):
    """Request: append an encoded message envelope to a channel."""

    seq: Count
    channel: Name
    message: bytes
    not_before: Seconds | None = None
    """Epoch seconds before which the message is not delivered, or None."""
    priority: Count = 0
    """The level on a channel with priority levels (clamped by the broker)."""


class Subscribe(_Frame, frozen=True, tag="subscribe"):
    """Request: join ``group`` on ``channel``; Ok carries the subscription id."""

    seq: Count
    channel: Name
    group: Name
    prefetch: Prefetch = 64
    start: StartAt = "earliest"
    offsets: tuple[Count, ...] | None = None
    """Replay from these offsets, one per partition (overrides ``start``)."""
    since: Seconds | None = None
    """Replay from the first message stored at or after this epoch time."""
    idle_expiry: Seconds | None = None
    """A new group is deleted once it has had no member this long (where the Welcome
    said ``group_expiry``; a server that predates the field ignores it)."""

    @classmethod
    def of(
        cls,
        seq: int,
        channel: str,
        group: str,
        prefetch: int,
        start: Start,
        idle_expiry: float | None = None,
    ) -> Subscribe:
        """The request joining ``group`` at ``start``."""
        if isinstance(start, FromOffsets):
            return cls(
                seq, channel, group, prefetch, offsets=start.offsets, idle_expiry=idle_expiry
            )
        if isinstance(start, FromTime):
            return cls(seq, channel, group, prefetch, since=start.time, idle_expiry=idle_expiry)
        return cls(seq, channel, group, prefetch, start, idle_expiry=idle_expiry)

    def begin(self) -> Start:
        """Where the group starts, as the transport interface says it."""
        if self.offsets is not None:
            return FromOffsets(self.offsets)
        if self.since is not None:
            return FromTime(self.since)
        return self.start


class Delete(_Frame, frozen=True, tag="delete"):
    """Request: delete a channel with its messages and groups, or one ``group`` of it.

    Deleting what does not exist succeeds. The broker's subscriptions on what
    is deleted end, so the connections holding them end too (their clients
    connect and subscribe again). Added after version 1 first shipped: a server
    that predates it ends the connection as ``malformed``.
    """

    seq: Count
    channel: Name
    group: Name | None = None


class Unsubscribe(_Frame, frozen=True, tag="unsubscribe"):
    """Request: leave; the subscription's unsettled deliveries come again."""

    seq: Count
    subscription: Count


class Credit(_Frame, frozen=True, tag="credit"):
    """Client → server: the server may send ``n`` more deliveries."""

    subscription: Count
    n: Prefetch


class Deliver(_Frame, frozen=True, tag="deliver"):
    """Server → client: one message for a subscription; spends one credit."""

    subscription: Count
    partition: Count
    offset: Count
    attempt: Positive
    message: bytes


class Ack(_Frame, frozen=True, tag="ack"):
    """Client → server: done with a delivery; not answered."""

    subscription: Count
    partition: Count
    offset: Count


class Acks(_Frame, frozen=True, tag="acks"):
    """Client → server: done with the deliveries ``offsets`` of a subscription, as one Ack
    each in this order; not answered. Only to a server whose Welcome said ``batched``."""

    subscription: Count
    offsets: tuple[Count, ...]


class Nack(_Frame, frozen=True, tag="nack"):
    """Client → server: deliver again, not before ``delay`` seconds; not answered."""

    subscription: Count
    partition: Count
    offset: Count
    delay: Seconds = 0.0


class Ok(_Frame, frozen=True, tag="ok"):
    """Server → client: request ``seq`` succeeded."""

    seq: Count
    result: Count | None = None
    """The subscription id for Subscribe; None otherwise."""


class Oks(_Frame, frozen=True, tag="oks"):
    """Server → client: requests ``seqs`` succeeded, as one ``Ok(seq)`` each (no result);
    only to a client whose Hello said ``batched``."""

    seqs: tuple[Count, ...]


class Error(_Frame, frozen=True, tag="error"):
    """Either way: request ``seq`` failed, or with seq None the connection ends."""

    seq: Count | None
    code: ErrorCode
    message: str

    @classmethod
    def of(cls, seq: int | None, exc: Exception) -> Error | None:
        """The Error telling the peer about ``exc``, or None for an unexpected failure.

        The inverse of :meth:`exception`: what a broker refuses with its own
        errors gets their code; anything else is the caller's to log and to
        answer with ``internal``.
        """
        code: ErrorCode | None
        if isinstance(exc, ProtocolError):
            code = cast(ErrorCode, exc.code) if exc.code in _CODES else "internal"
        else:
            code = next((c for kind, c in _EXCEPTION_CODES if isinstance(exc, kind)), None)
        return None if code is None else cls(seq, code, str(exc))

    def exception(self) -> SeawallError:
        """The exception the sender of the failed request should see."""
        if self.code == "permission-denied":
            return PermissionDenied(self.message)
        if self.code == "too-large" and self.seq is not None:
            return MessageTooLarge(self.message)
        if self.code == "channel-full":
            return ChannelFull(self.message)
        if self.code == "invalid":
            return ConfigurationError(self.message)
        if self.code == "unavailable":
            return ConnectionLost(self.message)
        return ProtocolError(self.code, self.message)


_CODES = frozenset(get_args(ErrorCode))
_EXCEPTION_CODES: tuple[tuple[type[Exception], ErrorCode], ...] = (
    (PermissionDenied, "permission-denied"),
    (MessageTooLarge, "too-large"),
    (ChannelFull, "channel-full"),
    (DecodeError, "malformed"),
    (ConfigurationError, "invalid"),
    (TransportClosed, "internal"),
)


class Ping(_Frame, frozen=True, tag="ping"):
    """Either way: are you there? Answered by Pong at once."""


class Pong(_Frame, frozen=True, tag="pong"):
    """Either way: the answer to Ping."""


class Goodbye(_Frame, frozen=True, tag="goodbye"):
    """Either way: the sender sends nothing more and closes."""

    reason: str = ""


Request: TypeAlias = Declare | Publish | Subscribe | Unsubscribe | Delete
Response: TypeAlias = Ok | Oks | Error
Flow: TypeAlias = Credit | Deliver | Ack | Acks | Nack
Control: TypeAlias = Hello | Welcome | Ping | Pong | Goodbye
Frame: TypeAlias = Request | Response | Flow | Control

_HEADER = struct.Struct(">I")
_encoder = msgspec.msgpack.Encoder()
_decoder: msgspec.msgpack.Decoder[Frame] = msgspec.msgpack.Decoder(Frame)


def encode_frame(frame: Frame, *, max_frame: int = MAX_LENGTH) -> bytes:
    """``frame`` with its length prefix, ready to write; over ``max_frame`` raises."""
    buffer = bytearray()
    encode_frame_into(frame, buffer, max_frame=max_frame)
    return bytes(buffer)


def encode_frame_into(frame: Frame, buffer: bytearray, *, max_frame: int = MAX_LENGTH) -> None:
    """Append ``frame`` with its length prefix to ``buffer``; over ``max_frame`` raises.

    Encoding in place spares a copy per frame, which counts at tens of
    thousands of frames a second. On error ``buffer`` is left as it was.
    """
    start = len(buffer)
    _encoder.encode_into(frame, buffer, start + _HEADER.size)
    length = len(buffer) - start - _HEADER.size
    if length > max_frame:
        del buffer[start:]
        raise ProtocolError(
            "too-large",
            f"{type(frame).__name__} frame of {length} bytes exceeds the peer's "
            f"max_frame of {max_frame} bytes; send a smaller message",
        )
    _HEADER.pack_into(buffer, start, length)


class FrameReader:
    """Cuts a byte stream into frames, however the stream was split into chunks.

    It holds at most one incomplete frame (at most ``4 + max_frame`` bytes). A
    length over ``max_frame`` is refused as soon as its prefix arrives, before
    any of the body is kept. After any error the reader is poisoned: where the
    next frame starts is unknown, so the connection has to be closed.
    """

    def __init__(self, max_frame: int = DEFAULT_MAX_FRAME) -> None:
        if not 1 <= max_frame <= MAX_LENGTH:
            raise ConfigurationError(f"max_frame must be 1..{MAX_LENGTH} bytes, got {max_frame}")
        self.max_frame = max_frame
        self._pending = bytearray()  # the start of a frame that did not arrive whole
        self._error: ProtocolError | None = None

    @property
    def buffered(self) -> int:
        """Bytes held of a frame not yet complete."""
        return len(self._pending)

    def wanted(self) -> int:
        """Bytes still missing from the frame in progress, its length prefix first.

        Feeding exactly this many, again and again, reads one frame and not a
        byte past it: how a server reads Hello before it trusts the peer.
        """
        pending = self._pending
        if len(pending) < _HEADER.size:
            return _HEADER.size - len(pending)
        return _HEADER.size + self._length_at(pending, 0) - len(pending)

    def feed(self, data: bytes | bytearray | memoryview) -> list[Frame]:
        """The frames completed by ``data``, in stream order.

        On an error the frames before it in the same ``data`` are dropped too:
        the connection is ending, and whatever they asked for is retried.
        """
        if self._error is not None:
            raise ProtocolError(
                self._error.code,
                f"frame reader stopped at an earlier error ({self._error}); the stream "
                "position is lost, so close this connection and open a new one",
            )
        frames: list[Frame] = []
        try:
            with memoryview(data) as view:
                used = self._complete_pending(view, frames)
                used = self._split(view, used, frames)
                with view[used:] as rest:
                    self._pending += rest
        except ProtocolError as exc:
            # a copy: the raised one's traceback refers to this reader, and a cycle would
            # keep the connection's buffers until the garbage collector's next full pass
            self._error = ProtocolError(exc.code, str(exc))
            self._pending = bytearray()
            raise
        return frames

    def _complete_pending(self, view: memoryview, frames: list[Frame]) -> int:
        """Top up the frame split across feeds from the front of ``view``; bytes used."""
        pending = self._pending
        if not pending:
            return 0
        used = 0
        if len(pending) < _HEADER.size:
            used = min(_HEADER.size - len(pending), len(view))
            with view[:used] as head:
                pending += head
            if len(pending) < _HEADER.size:
                return used
        total = _HEADER.size + self._length_at(pending, 0)
        more = min(total - len(pending), len(view) - used)
        with view[used : used + more] as body:
            pending += body
        if len(pending) == total:
            self._pending = bytearray()
            frames.append(self._decode(pending, _HEADER.size, total))
        return used + more

    def _split(self, view: memoryview, pos: int, frames: list[Frame]) -> int:
        """Decode the whole frames in ``view`` from ``pos``; where the first partial one starts."""
        # The hot loop of both ends, hence the local names and no helper calls.
        end, limit, size = len(view), self.max_frame, _HEADER.size
        unpack, decode, append = _HEADER.unpack_from, _decoder.decode, frames.append
        try:
            while end - pos >= size:
                (length,) = unpack(view, pos)
                stop = pos + size + length
                if length > limit or stop > end:
                    break
                append(decode(view[pos + size : stop]))  # the slice dies with the call
                pos = stop
        except (msgspec.DecodeError, UnicodeDecodeError):
            self._decode(view, pos + size, stop)  # raises the explained error
        if end - pos >= size:
            self._length_at(view, pos)  # raises if the next frame is over the limit
        return pos

    def _length_at(self, buffer: bytearray | memoryview, pos: int) -> int:
        (length,) = _HEADER.unpack_from(buffer, pos)
        if length > self.max_frame:
            raise ProtocolError(
                "too-large",
                f"incoming frame announces {length} bytes, over this end's max_frame of "
                f"{self.max_frame} bytes; the peer must send smaller frames (or both ends "
                "raise max_frame); closing the connection",
            )
        return int(length)

    @staticmethod
    def _decode(buffer: bytearray | memoryview, start: int, stop: int) -> Frame:
        with memoryview(buffer) as whole, whole[start:stop] as body:
            try:
                return _decoder.decode(body)
            except (msgspec.DecodeError, UnicodeDecodeError) as exc:  # bad UTF-8 is the latter
                raise ProtocolError(
                    "malformed",
                    f"frame body of {stop - start} bytes is not a valid seawall frame "
                    f"({exc}); the peer is not speaking protocol {PROTOCOL_VERSION}, "
                    "closing the connection",
                ) from exc
