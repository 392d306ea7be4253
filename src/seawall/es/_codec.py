"""Typed events in, stored bytes out, and back again through upcaster chains.

Events are :class:`seawall.Event` structs with a ``type_name`` and a semver
``type_version``. Stored data is never rewritten: when an event class moves
to a new version, register an upcaster from each old version; on read, a
stored v1 event goes through v1 -> v2 -> v3 as plain data before it is turned
into the current class. Snapshots are payload structs too and take upcasters
the same way, so a snapshot type may change without throwing snapshots away.
msgspec encodes the payloads (JSON), so dates, decimals, UUIDs, enums and
nested structs round-trip with their types.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgspec

from .._exceptions import ConfigurationError, EventLoadError
from .._messages.ids import uuid7
from .._messages.payload import Payload
from ._records import NewEvent, RecordedEvent, SnapshotRecord

__all__ = ["EventCodec", "Upcaster"]

Upcaster = Callable[[dict[str, Any]], dict[str, Any]]
"""Turns the fields of one stored version into the fields of the next."""

_encoder = msgspec.json.Encoder()
_raw_decoder = msgspec.json.Decoder(dict[str, Any])


def _major(version: str) -> str:
    return version.split(".", 1)[0]


class EventCodec:
    """Encodes events and snapshots, and decodes stored ones into their current class."""

    def __init__(self, *types: type[Payload]) -> None:
        self._types: dict[str, type[Payload]] = {}
        self._decoders: dict[str, msgspec.json.Decoder[Any]] = {}
        self._current: dict[str, tuple[str, Callable[[bytes], Any]]] = {}
        self._upcasters: dict[tuple[str, str], tuple[str, Upcaster]] = {}
        for cls in types:
            self.register(cls)

    def register(self, cls: type[Payload]) -> None:
        """Know ``cls`` by its type name; a second class for one name is refused."""
        known = self._types.get(cls.type_name)
        if known is not None and known is not cls:
            raise ConfigurationError(
                f"event type {cls.type_name!r} is declared by both {known.__qualname__} and "
                f"{cls.__qualname__}; give one of them another type_name"
            )
        self._types[cls.type_name] = cls
        self._decoders[cls.type_name] = decoder = msgspec.json.Decoder(cls)
        self._current[cls.type_name] = (cls.type_version, decoder.decode)

    def upcaster(
        self, type_name: str, from_version: str, to_version: str
    ) -> Callable[[Upcaster], Upcaster]:
        """Register the function that turns ``type_name`` data from one version into the next."""

        def register(fn: Upcaster) -> Upcaster:
            key = (type_name, from_version)
            if key in self._upcasters:
                raise ConfigurationError(
                    f"{type_name!r} already has an upcaster from version {from_version}"
                )
            self._upcasters[key] = (to_version, fn)
            return fn

        return register

    def encode(self, event: Payload, *, id: str | None = None) -> NewEvent:
        """``event`` as a record to append, with a new time-ordered id unless given."""
        cls = type(event)
        if self._types.get(cls.type_name) is not cls:
            self.register(cls)
        return NewEvent(id or uuid7(), cls.type_name, cls.type_version, _encoder.encode(event))

    def encode_snapshot(self, stream: str, version: int, state: Payload) -> SnapshotRecord:
        """``state`` as the snapshot of ``stream`` at ``version``."""
        new = self.encode(state)
        return SnapshotRecord(stream, version, new.type, new.type_version, new.data)

    def decode(self, record: RecordedEvent) -> Payload:
        """The stored event as an instance of its current class (upcast if older)."""
        current = self._current.get(record.type)
        if current is not None and current[0] == record.type_version:
            try:  # the common case: stored in the current version
                result: Payload = current[1](record.data)
                return result
            except (msgspec.DecodeError, msgspec.ValidationError):
                pass  # the slow path below says what is wrong, and where
        return self._decode(
            record.type, record.type_version, record.data, record.stream, record.position
        )

    def decode_snapshot(self, record: SnapshotRecord) -> Payload:
        """The stored snapshot as its current class; errors name the stream and version."""
        return self._decode(
            record.type, record.type_version, record.data, record.stream, record.version
        )

    def _decode(self, type_name: str, version: str, data: bytes, stream: str, at: int) -> Payload:
        cls = self._types.get(type_name)
        if cls is None:
            raise EventLoadError(
                f"no event class is registered for this type (known: {sorted(self._types)}); "
                "register it with the codec",
                type_name=type_name,
                version=version,
                stream=stream,
                position=at,
            )
        try:
            if version == cls.type_version:
                result: Payload = self._decoders[type_name].decode(data)
                return result
            return self._upcast(cls, version, data)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise EventLoadError(
                f"the stored payload does not decode into {cls.__qualname__}: {exc}",
                type_name=type_name,
                version=version,
                stream=stream,
                position=at,
            ) from exc
        except LookupError as exc:
            raise EventLoadError(
                str(exc.args[0]),
                type_name=type_name,
                version=version,
                stream=stream,
                position=at,
            ) from None

    def _upcast(self, cls: type[Payload], version: str, data: bytes) -> Payload:
        fields = _raw_decoder.decode(data)
        start = version
        while version != cls.type_version:
            step = self._upcasters.get((cls.type_name, version))
            if step is None:
                if _major(version) == _major(cls.type_version):
                    break  # a minor or patch change: new fields have defaults
                raise LookupError(
                    f"no upcaster leads from version {version} to {cls.type_version} "
                    f"(chain started at {start}); register one with codec.upcaster("
                    f"{cls.type_name!r}, {version!r}, ...)"
                )
            version, fn = step
            fields = fn(fields)
        result: Payload = self._decoders[cls.type_name].decode(_encoder.encode(fields))
        return result
