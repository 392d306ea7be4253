"""Payload codecs: JSON (the default) and MessagePack, both through msgspec.

Encoders are shared; a decoder is built once per payload class and reused,
which is where msgspec gets its speed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol, TypeVar

import msgspec

from .._exceptions import DecodeError

__all__ = ["JSON", "MSGPACK", "Codec", "JsonCodec", "MsgPackCodec", "codec_for", "raw_decoder"]

T = TypeVar("T")


class Codec(Protocol):
    """Turns payloads into bytes and back; named by a MIME content type."""

    content_type: str

    def encode(self, obj: Any) -> bytes: ...

    def decode(self, data: bytes, into: type[T]) -> T: ...


class _MsgspecCodec:
    content_type = ""

    def __init__(self) -> None:
        self._decoders: dict[type[Any], Any] = {}

    def _new_decoder(self, into: type[Any]) -> Any:
        raise NotImplementedError

    def decoder(self, into: type[T]) -> Callable[[bytes], T]:
        """The msgspec decode function for ``into``: raises msgspec's own errors."""
        decoder = self._decoders.get(into)
        if decoder is None:
            decoder = self._decoders[into] = self._new_decoder(into)
        return decoder.decode  # type: ignore[no-any-return]

    def decode(self, data: bytes, into: type[T]) -> T:
        try:
            return self.decoder(into)(data)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            name = getattr(into, "type_name", None) or getattr(into, "__qualname__", into)
            raise DecodeError(f"{self.content_type} body is not a valid {name}: {exc}") from exc


class JsonCodec(_MsgspecCodec):
    """JSON via msgspec; the default content type."""

    content_type = "application/json"

    def __init__(self) -> None:
        super().__init__()
        self._encoder = msgspec.json.Encoder()
        # msgspec's encode itself on the instance: every message's payload passes here,
        # and the method below would add a Python frame around the call.
        self.encode = self._encoder.encode  # type: ignore[method-assign,assignment]

    def encode(self, obj: Any) -> bytes:
        return self._encoder.encode(obj)

    def _new_decoder(self, into: type[Any]) -> Any:
        return msgspec.json.Decoder(into)


class MsgPackCodec(_MsgspecCodec):
    """MessagePack via msgspec; smaller and faster, not human-readable."""

    content_type = "application/msgpack"

    def __init__(self) -> None:
        super().__init__()
        self._encoder = msgspec.msgpack.Encoder()
        # msgspec's encode itself on the instance: every message's payload passes here,
        # and the method below would add a Python frame around the call.
        self.encode = self._encoder.encode  # type: ignore[method-assign,assignment]

    def encode(self, obj: Any) -> bytes:
        return self._encoder.encode(obj)

    def _new_decoder(self, into: type[Any]) -> Any:
        return msgspec.msgpack.Decoder(into)


JSON = JsonCodec()
MSGPACK = MsgPackCodec()
_BY_TYPE: dict[str, Codec] = {JSON.content_type: JSON, MSGPACK.content_type: MSGPACK}


def codec_for(content_type: str | None) -> Codec:
    """The codec for a ``datacontenttype``; JSON when none is given."""
    if not content_type:
        return JSON
    codec = _BY_TYPE.get(content_type)  # as seawall writes it: no parameters, lower case
    if codec is None:
        codec = _BY_TYPE.get(content_type.split(";", 1)[0].strip().lower())
    if codec is None:
        raise DecodeError(
            f"no codec for content type {content_type!r}; use one of {sorted(_BY_TYPE)}"
        )
    return codec


def raw_decoder(content_type: str, into: type[T]) -> Callable[[bytes], T] | None:
    """msgspec's decode function for ``into`` in ``content_type``, for hot paths.

    It raises msgspec's errors, not :class:`DecodeError`: on failure, call
    :meth:`Codec.decode` for the error to show. None if no such codec.
    """
    codec = _BY_TYPE.get(content_type)
    return codec.decoder(into) if isinstance(codec, _MsgspecCodec) else None
