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
A message names the schema it was written in (``dataschema``, see
:func:`schema_uri`). Within a major version a schema only grows (new fields
have defaults), so a reader of any version of that major reads it; another
major is a breaking change. A :class:`TypeRegistry` therefore keeps one class
per type name *and major version*, so two majors of one type may live side by
side, and finds the class a message was written for; a message of a major it
has no class for is refused (:class:`~seawall.UnknownVersion`) unless an
upcaster lifts it (:mod:`.upcast`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, ClassVar, Literal, TypeVar

import msgspec

from .._exceptions import ConfigurationError, UnknownMessageType, UnknownVersion

__all__ = [
    "Command",
    "Document",
    "Event",
    "Kind",
    "Payload",
    "TypeRegistry",
    "choose",
    "major",
    "schema_uri",
    "schema_version",
    "takes",
]

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


def schema_version(dataschema: str | None) -> str | None:
    """The version a ``dataschema`` names; None if it names none (or is not seawall's form)."""
    if not dataschema or not dataschema.startswith(_SCHEMA_PREFIX):
        return None
    return dataschema.rsplit(":", 1)[-1]


def major(version: str) -> str:
    """The major part of a semver version: ``"2"`` for ``"2.1.0"``."""
    return version.split(".", 1)[0]


P = TypeVar("P", bound="Payload")


def _newest(classes: Mapping[str, type[P]]) -> type[P]:
    return max(classes.values(), key=lambda cls: int(major(cls.type_version)))


def takes(classes: Mapping[str, type[Payload]]) -> str:
    """What ``classes`` read, for error messages: ``ItemV1 (1.2.0), Item (2.0.0)``."""
    ordered = sorted(classes.values(), key=lambda cls: int(major(cls.type_version)))
    return ", ".join(f"{cls.__qualname__} ({cls.type_version})" for cls in ordered)


def choose(version: str | None, classes: Mapping[str, type[P]]) -> type[P] | None:
    """The class of ``classes`` (by major) that reads ``version``; None if none does.

    A message that names no version is read as the newest major known.
    """
    if version is None:
        return _newest(classes)
    return classes.get(major(version))


class TypeRegistry:
    """Maps message type names, and their major versions, to payload classes."""

    def __init__(self) -> None:
        self._types: dict[str, dict[str, type[Payload]]] = {}

    def register(self, cls: type[Payload]) -> None:
        """Add ``cls``; a second, different class for the same name and major is refused."""
        majors = self._types.setdefault(cls.type_name, {})
        known = majors.get(major(cls.type_version))
        if known is not None and known is not cls:
            raise ConfigurationError(
                f"message type {cls.type_name!r} version {major(cls.type_version)}.x is declared "
                f"twice, by {known.__module__}.{known.__qualname__} and "
                f"{cls.__module__}.{cls.__qualname__}; give one of them another type_name or "
                "major version"
            )
        majors[major(cls.type_version)] = cls

    def __contains__(self, type_name: object) -> bool:
        return type_name in self._types

    def versions(self, type_name: str) -> Mapping[str, type[Payload]]:
        """The classes registered for ``type_name``, by major version."""
        classes = self._types.get(type_name)
        if classes is None:
            raise UnknownMessageType(
                f"no payload class is registered for message type {type_name!r}; "
                f"known types: {sorted(self._types) or 'none'}"
            )
        return classes

    def resolve(self, type_name: str, dataschema: str | None = None) -> type[Payload]:
        """The class for ``type_name`` in the major version ``dataschema`` names."""
        classes = self.versions(type_name)
        version = schema_version(dataschema)
        cls = choose(version, classes)
        if cls is None:
            raise UnknownVersion(
                f"message type {type_name!r} arrived in schema version {version}, but the "
                f"classes for it are {takes(classes)}; a different major version is a "
                "breaking change: deploy a class for it or an upcaster"
            )
        return cls
