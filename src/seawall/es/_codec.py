"""Typed events in, stored bytes out, and back again through upcaster chains.

Events are :class:`seawall.Event` structs with a ``type_name`` and a semver
``type_version``. Stored data is never rewritten: when an event class moves
to a new major version, register an upcaster from each old major; on read, a
stored v1 event goes through v1 -> v2 -> v3 as plain data before it is turned
into the current class. The chains are :class:`~seawall.Upcasters`, the same
mechanism a service reads old messages with, so one chain may serve a codec and
a service (``Service(..., upcasters=codec.upcasters)``): events a relay publishes
from the log keep their stored version. Snapshots are payload structs too and
take upcasters the same way, so a snapshot type may change without throwing
snapshots away.
msgspec encodes the payloads (JSON), so dates, decimals, UUIDs, enums and
nested structs round-trip with their types.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar, overload

import msgspec

from .._exceptions import ConfigurationError, EventLoadError
from .._messages.ids import uuid7
from .._messages.payload import Payload, major
from .._messages.upcast import Upcaster, Upcasters, lift
from ._records import NewEvent, RecordedEvent, SnapshotRecord

__all__ = ["EventCodec", "Upcaster"]

U = TypeVar("U", bound=Upcaster)
Old = TypeVar("Old", bound=Payload)
New = TypeVar("New", bound=Payload)

_encoder = msgspec.json.Encoder()
_raw_decoder = msgspec.json.Decoder(dict[str, Any])


class EventCodec:
    """Encodes events and snapshots, and decodes stored ones into their current class."""

    def __init__(self, *types: type[Payload], upcasters: Upcasters | None = None) -> None:
        self._types: dict[str, type[Payload]] = {}
        self._decoders: dict[str, msgspec.json.Decoder[Any]] = {}
        self._current: dict[str, tuple[str, Callable[[bytes], Any]]] = {}
        self.upcasters = Upcasters() if upcasters is None else upcasters
        """The upcaster chains this codec reads old versions through; may be shared."""
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

    @overload
    def upcaster(self, fn: Callable[[Old], New], /) -> Callable[[Old], New]: ...

    @overload
    def upcaster(
        self, type_name: str, from_version: str, to_version: str, /
    ) -> Callable[[U], U]: ...

    def upcaster(self, *args: Any) -> Any:
        """Register an upcaster from an old major (see :meth:`seawall.Upcasters.upcaster`)."""
        return self.upcasters.upcaster(*args)

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
            if major(version) == major(cls.type_version):  # compatible: new fields have defaults
                result: Payload = self._decoders[type_name].decode(data)
                return result
            _, steps = self.upcasters.path(type_name, version, {major(cls.type_version)})
            return lift(_raw_decoder.decode(data), steps, cls)
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
