"""Upcasters: old data lifted to a newer major version, one step at a time.

A payload's schema may change in a breaking way: a new major version. Data
written in an older major (an event stored years ago, a message from a service
not yet upgraded) is never rewritten; its reader lifts it as plain data through
a chain of *upcasters*, each a function from the fields of one version to the
fields of a newer major (``dict -> dict``), and then reads the result as the
class it has. One :class:`Upcasters` object serves both readers of old data,
the event store's codec (:class:`seawall.es.EventCodec`) and the dispatcher of
a service (:meth:`seawall.Service.upcaster`), and one chain may be shared by both.

The rules:

- a step climbs to a *higher major* (``"1.0.0" -> "2.0.0"``); versions within a
  major are compatible (new fields have defaults) and need no step, so such a
  step is refused when registered;
- data of version V takes the step registered from V, else the one from the
  nearest lower version of V's major: a step written for 1.0.0 data reads 1.2.0
  data, whose added fields it may ignore, but never the other way round;
- steps are followed until the data reaches a major the reader has a class for;
  as every step climbs a major, a chain always ends;
- the last fields become the reader's class through :func:`msgspec.convert`, so
  dates, UUIDs, decimals and nested structs may arrive as text (JSON) or as values.

A step may also be written typed, from the old class to the new one, while the
old class is still around (see :meth:`Upcasters.upcaster`).

Sans-IO: data in, data out.
"""

from __future__ import annotations

import inspect
import re
import typing
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any, TypeVar, overload

import msgspec

from .._exceptions import ConfigurationError, UnknownVersion
from .payload import Payload, choose, major, takes

__all__ = ["Upcaster", "Upcasters", "lift", "plan"]

Upcaster = Callable[[dict[str, Any]], dict[str, Any]]
"""Turns the fields of one version of a payload into the fields of a newer major version."""

U = TypeVar("U", bound=Upcaster)
P = TypeVar("P", bound=Payload)
Old = TypeVar("Old", bound=Payload)
New = TypeVar("New", bound=Payload)

_VERSION = re.compile(r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(?:[-+][0-9A-Za-z.+-]+)?$")


def _order(version: str) -> tuple[int, int, int] | None:
    """``(major, minor, patch)`` of a semver version; None if it is not one."""
    found = _VERSION.match(version)
    return None if found is None else (int(found[1]), int(found[2]), int(found[3]))


def _name(fn: object) -> str:
    return getattr(fn, "__qualname__", None) or repr(fn)


class _Step(msgspec.Struct, frozen=True):
    source: str
    order: tuple[int, int, int]
    """The source version, comparable."""
    target: str
    fn: Upcaster


def _checked(type_name: str, source: str, target: str) -> tuple[int, int, int]:
    """``source``'s order, once the step is known to climb from one semver major to a higher."""
    start, end = _order(source), _order(target)
    if start is None or end is None:
        bad = source if start is None else target
        raise ConfigurationError(
            f"upcaster of {type_name!r}: {bad!r} is not a semver version; write it as "
            "MAJOR.MINOR.PATCH, e.g. '1.0.0'"
        )
    if end[0] <= start[0]:
        raise ConfigurationError(
            f"upcaster of {type_name!r} from {source} to {target}: a step must climb to a higher "
            "major version; versions within a major are compatible and need no upcaster"
        )
    return start


class Upcasters:
    """Upcaster chains by type name; one object may serve event codecs and services alike."""

    def __init__(self) -> None:
        self._steps: dict[str, dict[str, _Step]] = {}

    def add(self, type_name: str, from_version: str, to_version: str, fn: Upcaster) -> None:
        """Register ``fn`` as the step from ``from_version`` of ``type_name`` to ``to_version``."""
        order = _checked(type_name, from_version, to_version)
        steps = self._steps.setdefault(type_name, {})
        known = steps.get(from_version)
        if known is not None and (known.fn is not fn or known.target != to_version):
            raise ConfigurationError(
                f"{type_name!r} already has an upcaster from version {from_version} "
                f"({_name(known.fn)}, to {known.target}); register one step per version"
            )
        steps[from_version] = _Step(from_version, order, to_version, fn)

    @overload
    def upcaster(self, fn: Callable[[Old], New], /) -> Callable[[Old], New]: ...

    @overload
    def upcaster(
        self, type_name: str, from_version: str, to_version: str, /
    ) -> Callable[[U], U]: ...

    def upcaster(
        self,
        type_name: str | Callable[[Any], Any],
        from_version: str | None = None,
        to_version: str | None = None,
        /,
    ) -> Any:
        """Register an upcaster, as a decorator; two forms.

        ``@upcaster("shop.Item", "1.0.0", "2.0.0")`` over a function from the old
        fields to the new (a ``dict`` each), or ``@upcaster`` over a typed function
        from the old class to the new one (``def lift(old: ItemV1) -> Item``), which
        takes every version of its parameter's major.
        """
        if callable(type_name):
            return self._typed(type_name)
        if from_version is None or to_version is None:
            raise ConfigurationError(
                f"upcaster({type_name!r}, ...) needs the version it lifts from and the one it "
                "lifts to, e.g. upcaster('shop.Item', '1.0.0', '2.0.0')"
            )
        name, source, target = type_name, from_version, to_version

        def register(fn: U) -> U:
            self.add(name, source, target, fn)
            return fn

        return register

    def _typed(self, fn: Callable[[Old], New]) -> Callable[[Old], New]:
        old, new = _step_types(fn)

        def step(fields: dict[str, Any]) -> dict[str, Any]:
            before: Any = msgspec.convert(fields, old)
            lifted: dict[str, Any] = msgspec.to_builtins(fn(before))
            return lifted

        step.__qualname__ = _name(fn)
        self.add(new.type_name, f"{major(old.type_version)}.0.0", new.type_version, step)
        return fn

    def include(self, other: Upcasters) -> None:
        """Take every step of ``other`` as well; a step both have is fine, a clash is refused."""
        for type_name, steps in list(other._steps.items()):
            for step in list(steps.values()):
                self.add(type_name, step.source, step.target, step.fn)

    def path(
        self, type_name: str, version: str, majors: Collection[str]
    ) -> tuple[str, tuple[Upcaster, ...]]:
        """The steps that lift ``version`` to one of ``majors``, and the version they reach.

        Raises :class:`~seawall.UnknownVersion` when no chain leads there.
        """
        fns: list[Upcaster] = []
        current = version
        while major(current) not in majors:
            step = self._step(type_name, current)
            if step is None:
                raise UnknownVersion(_no_path(type_name, version, current, majors))
            fns.append(step.fn)
            current = step.target
        return current, tuple(fns)

    def _step(self, type_name: str, version: str) -> _Step | None:
        """The step from ``version``, or from the nearest lower version of its major."""
        steps = self._steps.get(type_name, {})
        exact = steps.get(version)
        order = _order(version)
        if exact is not None or order is None:
            return exact
        below = [s for s in steps.values() if s.order[0] == order[0] and s.order <= order]
        return max(below, key=lambda s: s.order, default=None)


def _no_path(type_name: str, start: str, stuck: str, majors: Collection[str]) -> str:
    began = "" if stuck == start else f" (the chain began at {start})"
    wanted = " or ".join(sorted(majors, key=lambda m: (len(m), m)))
    return (
        f"no upcaster leads from version {stuck} of {type_name!r}{began} to major version {wanted}"
    )


def _step_types(fn: Callable[..., Any]) -> tuple[type[Payload], type[Payload]]:
    """The old and new class of a typed upcaster, from its annotations."""
    try:
        hints = typing.get_type_hints(fn)
    except NameError as exc:
        raise ConfigurationError(
            f"upcaster {_name(fn)}: cannot resolve an annotation: {exc}"
        ) from exc
    params = list(inspect.signature(fn).parameters)
    old = _payload_class(hints.get(params[0])) if len(params) == 1 else None
    ret = _payload_class(hints.get("return"))
    if old is None or ret is None:
        raise ConfigurationError(
            f"typed upcaster {_name(fn)} must take one payload class and return one, e.g. "
            "'def lift(old: ItemV1) -> Item'; or register it with (type_name, from, to)"
        )
    if old.type_name != ret.type_name:
        raise ConfigurationError(
            f"typed upcaster {_name(fn)} turns {old.type_name!r} into {ret.type_name!r}; an "
            "upcaster lifts one message type to a newer version of the same type"
        )
    return old, ret


def _payload_class(hint: object) -> type[Payload] | None:
    return hint if isinstance(hint, type) and issubclass(hint, Payload) else None


def plan(
    type_name: str,
    version: str | None,
    classes: Mapping[str, type[P]],
    upcasters: Upcasters,
    *,
    reader: str,
) -> tuple[type[P], tuple[Upcaster, ...]]:
    """How ``reader`` reads ``type_name`` data of ``version``: the class, and the steps before it.

    ``classes`` are the classes it has, by major version. A message of a major
    none of them reads, and no chain lifts, raises :class:`~seawall.UnknownVersion`.
    """
    cls = choose(version, classes)
    if cls is not None:
        return cls, ()
    assert version is not None  # choose() reads an unversioned message as the newest
    try:
        reached, steps = upcasters.path(type_name, version, classes)
    except UnknownVersion as exc:
        raise UnknownVersion(
            f"{type_name!r} arrived in version {version}, but {reader} takes only "
            f"{takes(classes)}, and {exc}; deploy a handler for that major or register an "
            "upcaster (Service.upcaster)"
        ) from None
    return classes[major(reached)], steps


def lift(fields: dict[str, Any], steps: Sequence[Upcaster], into: type[P]) -> P:
    """``fields`` through ``steps``, then read as an ``into`` (msgspec's error if unfit)."""
    for step in steps:
        fields = step(fields)
    return msgspec.convert(fields, into)
