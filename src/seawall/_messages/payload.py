"""User payload classes: commands, events and documents.

A payload is a frozen msgspec ``Struct`` that names its message type and the
semver version of its schema::

    class CreateOrder(Command, frozen=True):
        type_name = "orders.CreateOrder"
        type_version = "1.2.0"
        order_id: str
        total: int

``type_name`` defaults to the class name and ``type_version`` to ``1.0.0``.
Payloads are frozen at run time whatever the subclass says; writing
``frozen=True`` lets the type checker know it too (mypy insists on it).
A :class:`TypeRegistry` finds the class for a type name when a message
arrives; payloads of another *major* version are refused, because a major
version means a breaking schema change (upcasting belongs to the state layer).
"""

from __future__ import annotations

import re
from typing import Any, ClassVar, Literal

import msgspec

from .._exceptions import ConfigurationError, UnknownMessageType

__all__ = ["Command", "Document", "Event", "Kind", "Payload", "TypeRegistry", "schema_uri"]

Kind = Literal["command", "event", "document"]

_SEMVER = re.compile(r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(?:[-+][0-9A-Za-z.+-]+)?$")
_SCHEMA_PREFIX = "urn:seawall:"


class _PayloadMeta(msgspec.StructMeta):
    # msgspec applies kw_only to the fields of one class body only, so pass it to every subclass
    def __new__(mcls, name: str, bases: tuple[type, ...], ns: dict[str, Any], **kw: Any) -> Any:
        kw.setdefault("kw_only", True)
        return super().__new__(mcls, name, bases, ns, **kw)


class Payload(msgspec.Struct, frozen=True, metaclass=_PayloadMeta):
    """Base of every message payload; subclass Command, Event or Document instead."""

    type_name: ClassVar[str] = ""
    type_version: ClassVar[str] = "1.0.0"
    kind: ClassVar[Kind] = "document"

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "type_name" not in cls.__dict__:
            cls.type_name = cls.__name__
        if not _SEMVER.match(cls.type_version):
            raise ConfigurationError(
                f"{cls.__qualname__}.type_version = {cls.type_version!r} is not a semver "
                "version; write it as MAJOR.MINOR.PATCH, e.g. '1.0.0'"
            )


class Command(Payload, frozen=True):
    """A request that a service do something; handled by exactly one instance."""

    kind: ClassVar[Kind] = "command"


class Event(Payload, frozen=True):
    """A fact that happened; every subscribing group gets it."""

    kind: ClassVar[Kind] = "event"


class Document(Payload, frozen=True):
    """Plain data, e.g. the reply to a command."""

    kind: ClassVar[Kind] = "document"


def schema_uri(cls: type[Payload]) -> str:
    """The ``dataschema`` attribute for a payload class: type name plus version."""
    return f"{_SCHEMA_PREFIX}{cls.type_name}:{cls.type_version}"


def _major(version: str) -> str:
    return version.split(".", 1)[0]


class TypeRegistry:
    """Maps message type names to payload classes."""

    def __init__(self) -> None:
        self._types: dict[str, type[Payload]] = {}

    def register(self, cls: type[Payload]) -> None:
        """Add ``cls``; a second, different class for the same name is refused."""
        known = self._types.get(cls.type_name)
        if known is not None and known is not cls:
            raise ConfigurationError(
                f"message type {cls.type_name!r} is declared twice, by "
                f"{known.__module__}.{known.__qualname__} and {cls.__module__}.{cls.__qualname__}; "
                "give one of them another type_name"
            )
        self._types[cls.type_name] = cls

    def __contains__(self, type_name: object) -> bool:
        return type_name in self._types

    def resolve(self, type_name: str, dataschema: str | None = None) -> type[Payload]:
        """The class for ``type_name``; checks the major version named by ``dataschema``."""
        cls = self._types.get(type_name)
        if cls is None:
            raise UnknownMessageType(
                f"no payload class is registered for message type {type_name!r}; "
                f"known types: {sorted(self._types) or 'none'}"
            )
        if dataschema and dataschema.startswith(_SCHEMA_PREFIX):
            version = dataschema.rsplit(":", 1)[-1]
            if _major(version) != _major(cls.type_version):
                raise UnknownMessageType(
                    f"message type {type_name!r} arrived in schema version {version}, but "
                    f"{cls.__qualname__} is version {cls.type_version}; a different major "
                    "version is a breaking change: deploy a class for it or an upcaster"
                )
        return cls
