"""Adapter options as frozen value objects, filled from code, a URL query or a TOML table.

Part of the transport SPI layer, sans-IO. Every adapter keeps its tunables in
one frozen, keyword-only dataclass deriving from :class:`TransportOptions`
(``NatsOptions``, ``RedisOptions``, … in :mod:`seawall.transports`). The
annotation of each field says how a value is read, and this module does the
reading once for every adapter:

==================  =============================================================
annotation          in a URL query (``?name=value``), or a string in TOML
==================  =============================================================
``float``           a finite number: ``2.5``, ``30`` (``Seconds``: of seconds)
``int``             a whole number: ``3`` (``Bytes``: of bytes)
``bool``            ``true`` or ``false`` (also ``1``/``0``, ``yes``/``no``, ``on``/``off``)
``str``             the text, percent-decoded
``Literal[...]``    one of the words
``X | None``        ``none`` for None, else an ``X``
==================  =============================================================

A TOML table gives typed values, taken as they are (an integer where a number
is wanted too); a string there is read as URL text, so ``publish_timeout =
"none"`` works.

When an adapter is built (:meth:`TransportOptions.resolve`), the options it
runs with are, option by option, the last of: its defaults, the options object
or mapping given (``options=``, a ``seawall.toml`` table), the URL's query, the
constructor's keyword arguments.

Every mistake is a :class:`~seawall.ConfigurationError` that names the option,
where it came from and what it takes; an unknown option lists the known ones.
A URL is shown by :func:`redact`, without its user part and query, which may
hold credentials. Query keys the adapter's driver reads itself
(:attr:`TransportOptions.driver_keys`, e.g. redis-py's ``socket_timeout``)
are left in the URL handed to the driver.
"""

from __future__ import annotations

import dataclasses
import math
import re
import types
from collections.abc import Mapping
from typing import (
    Annotated,
    Any,
    ClassVar,
    Literal,
    NoReturn,
    Self,
    Union,
    get_args,
    get_origin,
)
from typing import get_type_hints as _hints
from urllib.parse import unquote_plus, urlencode

from .._exceptions import ConfigurationError

__all__ = ["Bytes", "Seconds", "TransportOptions", "option_text", "redact", "with_options"]

Seconds = Annotated[float, "seconds"]
"""A duration option: a number of seconds."""
Bytes = Annotated[int, "bytes"]
"""A size option: a whole number of bytes."""

_TRUE = ("true", "1", "yes", "on")
_FALSE = ("false", "0", "no", "off")
_USER_PART = re.compile(r"//[^,]*@")  # greedy: a password may hold "@" or "/"


def redact(url: str) -> str:
    """``url`` for messages: without user parts (tokens, passwords) and without its query."""
    return _USER_PART.sub("//", url.partition("?")[0].partition("#")[0])


def option_text(value: object) -> str:
    """An option value as URL query text, read back to the same value."""
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def with_options(url: str, table: Mapping[str, object]) -> str:
    """``url`` with the options of ``table`` its query does not give yet added to it."""
    query = url.partition("?")[2]
    given = {unquote_plus(pair.partition("=")[0]) for pair in query.split("&") if pair}
    extra = urlencode({k: option_text(v) for k, v in table.items() if k not in given})
    if not extra:
        return url
    sep = "&" if query else ("" if url.endswith("?") else "?")
    return url + sep + extra


@dataclasses.dataclass(frozen=True)
class _Kind:
    """How one option is read and checked, from its field's annotation."""

    base: type | None  # float, int, bool or str; None for a Literal
    choices: tuple[str, ...] = ()
    optional: bool = False
    unit: str = ""

    def describe(self) -> str:
        if self.choices:
            text = "one of " + ", ".join(self.choices)
        else:
            text = {float: "a number", int: "a whole number", bool: "true or false"}.get(
                self.base or str, "text"
            )
            if self.unit:
                text += f" of {self.unit}"
            text += f" ({getattr(self.base, '__name__', '?')})"
        return text + (" or none" if self.optional else "")

    def fits(self, value: object) -> bool:
        """Whether ``value``, as given in code or TOML, is one of this option's values."""
        if value is None:
            return self.optional
        if self.choices:
            return value in self.choices
        if isinstance(value, bool) or self.base is bool:
            return isinstance(value, bool) and self.base is bool
        if self.base is float:
            return isinstance(value, int | float) and math.isfinite(value)
        return isinstance(value, self.base or str)

    def read(self, text: str) -> object:
        """``text`` (from a URL) as a value; ValueError if it is none of them."""
        if self.optional and text.lower() == "none":
            return None
        if self.base is bool:
            if text.lower() in _TRUE + _FALSE:
                return text.lower() in _TRUE
            raise ValueError(text)
        value: object = text
        if self.base is int:
            value = int(text)
        elif self.base is float:
            value = float(text)
        if not self.fits(value):
            raise ValueError(text)
        return value


def _kind(hint: Any) -> _Kind:
    optional = False
    if get_origin(hint) in (Union, types.UnionType):
        rest = [arg for arg in get_args(hint) if arg is not type(None)]
        if len(rest) != 1:
            raise TypeError(f"an option is one type or that type | None, not {hint!r}")
        optional, hint = True, rest[0]
    unit = ""
    if get_origin(hint) is Annotated:
        hint, *extras = get_args(hint)
        unit = next((e for e in extras if isinstance(e, str)), "")
    if get_origin(hint) is Literal:
        return _Kind(None, tuple(str(c) for c in get_args(hint)), optional)
    if hint not in (float, int, bool, str):
        raise TypeError(f"an option is a float, int, bool, str or Literal, not {hint!r}")
    return _Kind(hint, (), optional, unit)


_known: dict[type, dict[str, _Kind]] = {}


def _kinds(cls: type[TransportOptions]) -> dict[str, _Kind]:
    """Every option of ``cls`` and how it is read (worked out once per class)."""
    kinds = _known.get(cls)
    if kinds is None:
        hints = _hints(cls, include_extras=True)
        kinds = _known[cls] = {f.name: _kind(hints[f.name]) for f in dataclasses.fields(cls)}
    return kinds


@dataclasses.dataclass(frozen=True, kw_only=True)
class TransportOptions:
    """Base of every adapter's options: a frozen, keyword-only dataclass of tunables.

    A subclass declares its fields with their defaults, checks their ranges in
    :meth:`check`, and names the query keys its driver reads in
    :attr:`driver_keys`. Third-party adapters derive from it the same way.
    """

    driver_keys: ClassVar[frozenset[str]] = frozenset()
    """URL query keys that are not options but the driver's own: left in the URL."""
    driver: ClassVar[str] = "the driver"
    """Who reads :attr:`driver_keys`, for messages."""

    def __post_init__(self) -> None:
        for name, kind in _kinds(type(self)).items():
            value = getattr(self, name)
            if not kind.fits(value):
                raise ConfigurationError(
                    f"{type(self).__name__}.{name} must be {kind.describe()}, got {value!r}"
                )
            if kind.base is float and type(value) is int:
                object.__setattr__(self, name, float(value))
        self.check()

    def check(self) -> None:
        """Check ranges (types are checked already); raise with :meth:`need`."""

    def need(self, name: str, holds: bool, rule: str) -> None:
        """Refuse option ``name`` unless ``holds``; ``rule`` says what it must be."""
        if not holds:
            raise ConfigurationError(
                f"{type(self).__name__}.{name} must be {rule}, got {getattr(self, name)!r}"
            )

    # -- reading -------------------------------------------------------------------
    @classmethod
    def names(cls) -> list[str]:
        """The options, sorted."""
        return sorted(_kinds(cls))

    @classmethod
    def from_mapping(cls, table: Mapping[str, object], *, where: str) -> Self:
        """The options of ``table`` (a ``seawall.toml`` table), the rest at their defaults."""
        return cls().merged(cls.read_mapping(table, where=where), where=where)

    @classmethod
    def from_url(cls, url: str) -> Self:
        """The options of ``url``'s query, the rest at their defaults."""
        return cls.resolve(None, url=url)[0]

    @classmethod
    def read_mapping(cls, table: Mapping[str, object], *, where: str) -> dict[str, object]:
        """``table``'s values checked against the options' types (ranges not yet)."""
        kinds = _kinds(cls)
        values: dict[str, object] = {}
        for key, value in table.items():
            kind = kinds.get(key) or cls._unknown(key, where)
            if isinstance(value, str) and kind.base is not str:
                value = cls._read(key, kind, value, where)
            elif not kind.fits(value):
                raise ConfigurationError(
                    f"option {key} in {where} must be {kind.describe()}, got {value!r}"
                )
            values[key] = value
        return values

    @classmethod
    def read_url(cls, url: str) -> tuple[dict[str, object], str]:
        """The options in ``url``'s query, and ``url`` without them (driver keys kept)."""
        base, _, query = url.partition("?")
        query, hash_, fragment = query.partition("#")
        kinds = _kinds(cls)
        values: dict[str, object] = {}
        kept: list[str] = []
        for pair in filter(None, query.split("&")):
            raw_key, _, raw_value = pair.partition("=")
            key = unquote_plus(raw_key)
            if key in kinds:
                values[key] = cls._read(key, kinds[key], unquote_plus(raw_value), redact(url))
            elif key in cls.driver_keys:
                kept.append(pair)
            else:
                cls._unknown(key, redact(url))
        rest = base + ("?" + "&".join(kept) if kept else "") + hash_ + fragment
        return values, rest

    @classmethod
    def _read(cls, key: str, kind: _Kind, text: str, where: str) -> object:
        try:
            return kind.read(text)
        except ValueError:
            raise ConfigurationError(
                f"option {key} in {where} must be {kind.describe()}, got {text!r}"
            ) from None

    @classmethod
    def _unknown(cls, key: str, where: str) -> NoReturn:
        driver = ""
        if cls.driver_keys:
            driver = f"; {cls.driver} reads {', '.join(sorted(cls.driver_keys))} from the URL"
        raise ConfigurationError(
            f"unknown option {key!r} in {where}; the options of {cls.__name__} are "
            f"{', '.join(cls.names())}{driver}"
        )

    # -- combining -----------------------------------------------------------------
    @classmethod
    def coerce(cls, options: object, *, where: str) -> Self:
        """``options`` as given to an adapter: an instance, a mapping of options, or None."""
        if options is None:
            return cls()
        if isinstance(options, cls):
            return options
        if isinstance(options, Mapping):
            return cls.from_mapping(options, where=where)
        raise ConfigurationError(
            f"{where} takes a {cls.__name__} or a mapping of its options, "
            f"not {type(options).__name__}"
        )

    @classmethod
    def resolve(
        cls,
        options: object,
        *,
        url: str | None = None,
        settings: Mapping[str, object] | None = None,
    ) -> tuple[Self, str]:
        """What an adapter runs with: ``options``, overridden by ``url``'s query, then by
        keyword ``settings``; and the URL left for the driver (empty without ``url``)."""
        given = f"for {redact(url)}" if url is not None else f"to {cls.__name__}"
        chosen = cls.coerce(options, where=f"the options given {given}")
        rest = ""
        if url is not None:
            values, rest = cls.read_url(url)
            chosen = chosen.merged(values, where=redact(url))
        settings = settings or {}
        unknown = sorted(set(settings) - set(_kinds(cls)))
        if unknown:
            cls._unknown(unknown[0], "the keyword arguments")
        return chosen.merged(settings, where="the keyword arguments"), rest

    def merged(self, values: Mapping[str, object], *, where: str) -> Self:
        """A copy with ``values`` (checked again); errors say ``where`` they came from."""
        if not values:
            return self
        try:
            return dataclasses.replace(self, **values)
        except ConfigurationError as exc:
            raise ConfigurationError(f"{exc} (from {where})") from None

    def changes(self) -> dict[str, object]:
        """The options that differ from their defaults."""
        defaults = type(self)()
        return {
            name: getattr(self, name)
            for name in _kinds(type(self))
            if getattr(self, name) != getattr(defaults, name)
        }

    def to_query(self) -> str:
        """:meth:`changes` as a URL query (without the ``?``)."""
        return urlencode({k: option_text(v) for k, v in self.changes().items()})
