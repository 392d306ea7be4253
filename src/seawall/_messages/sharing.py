"""Which payload classes an in-process delivery may hand over as the sender's very object.

A handler that gets the object the sender built, rather than one decoded from its
bytes, skips the decode; that is safe only if neither side can change what the other
sees. Payloads are frozen Structs, but a field may still hold a list, a dict or a set:
such a class is delivered as a copy (decoded from ``Message.data``, as from a broker).
A class is :func:`shareable` when every field's type is immutable all the way down
(text, numbers, booleans, bytes, None, times, UUIDs, decimals, enums, literals, and
tuples, frozensets, frozen Structs and unions of these) and carries no constraint
(``Meta``) that decoding would check and building an object does not. Checked once
per class.

What sharing does not re-check is that the values match the annotations: a Struct is
built without validation, so ``Reading(seq="7")`` reaches the handler as built, where a
broker's copy would fail to decode. The test system stays strict for that reason.
"""

from __future__ import annotations

import functools

import msgspec
from msgspec import inspect as mi

__all__ = ["shareable"]

_PLAIN = (
    mi.NoneType,
    mi.BoolType,
    mi.EnumType,
    mi.LiteralType,
    mi.DateType,
    mi.TimeType,
    mi.UUIDType,
    mi.DecimalType,
)
_CONSTRAINED = (mi.IntType, mi.FloatType, mi.StrType, mi.BytesType, mi.DateTimeType)


@functools.cache
def shareable(cls: type[msgspec.Struct]) -> bool:
    """Whether objects of ``cls`` are immutable all the way down and free of constraints."""
    try:
        info = mi.type_info(cls)
    except (TypeError, ValueError):  # a type msgspec cannot describe: decode it
        return False
    return _immutable(info, set())


def _immutable(info: mi.Type, seen: set[type]) -> bool:
    if isinstance(info, _PLAIN):
        return not isinstance(info, mi.TimeType) or info.tz is None  # tz: checked on decode
    if isinstance(info, _CONSTRAINED):
        return not any(
            getattr(info, name, None) is not None
            for name in ("gt", "ge", "lt", "le", "multiple_of", "pattern", "tz")
        ) and not (getattr(info, "min_length", None) or getattr(info, "max_length", None))
    if isinstance(info, mi.UnionType):
        return all(_immutable(t, seen) for t in info.types)
    if isinstance(info, mi.TupleType):
        return all(_immutable(t, seen) for t in info.item_types)
    if isinstance(info, (mi.VarTupleType, mi.FrozenSetType)):
        return not (info.min_length or info.max_length) and _immutable(info.item_type, seen)
    if isinstance(info, mi.StructType):
        if info.cls in seen:  # a recursive type: decided where it started
            return True
        seen.add(info.cls)
        return info.cls.__struct_config__.frozen and all(
            _immutable(field.type, seen) for field in info.fields
        )
    return False  # lists, dicts, sets, Any, custom types: delivered as a copy
