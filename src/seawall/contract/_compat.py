"""Is a new contract backward compatible with the old one? Pure, over two AsyncAPI documents.

Within a major version a payload schema only grows (``seawall._messages.payload``):
readers of any version of that major read every message of it. So, for each
message of the old document, the message of the same type name and major in
the new one must keep every field, with its type, and may add fields only with
a default. A breaking change is allowed only with a major bump: the new
document then carries the type in a higher major instead (and the old major's
readers get an upcaster or stay deployed). What is reported:

- ``removed``: a field of the old schema is gone;
- ``renamed``: a field is gone and a new one of the same schema appeared;
- ``required``: a new field without a default, or an old optional field made required;
- ``type``: a field's schema changed (also the payload as a whole);
- ``message-removed``: a message type (in that major) is gone, with no higher major;
- ``added`` (compatible): a new optional field;
- ``major-bump`` (compatible): the type moved to a higher major, where anything goes;
- ``version`` (compatible, a hint): the schema grew but the version did not.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["BREAKING", "Change", "compare"]

BREAKING = frozenset({"removed", "renamed", "required", "type", "message-removed"})
"""The kinds of :class:`Change` that fail a check."""

_IGNORED = frozenset({"title", "description", "default", "examples", "$comment"})


@dataclass(frozen=True, slots=True)
class Change:
    """One difference between the old and the new contract."""

    message: str
    """The message key: ``<type name>.v<major>``."""
    kind: str
    field: str
    """The field's path (``address.city``, ``items[]``), or ``""`` for the message itself."""
    detail: str

    @property
    def breaking(self) -> bool:
        return self.kind in BREAKING

    def __str__(self) -> str:
        where = f"{self.message}" + (f" field {self.field!r}" if self.field else "")
        verdict = "BREAKING" if self.breaking else "ok"
        return f"{verdict}: {where}: {self.detail}"


def _messages(doc: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    found = doc.get("components", {}).get("messages", {})
    if not isinstance(found, dict):
        raise ValueError("components.messages is not an object; is this an AsyncAPI document?")
    return found


def _major(message: Mapping[str, Any]) -> int:
    version = str(message.get("x-seawall-version", "1.0.0"))
    return int(version.split(".", 1)[0])


class _Schemas:
    """One document's schemas, with ``$ref`` resolved on demand."""

    def __init__(self, doc: Mapping[str, Any]) -> None:
        self.components: dict[str, Any] = doc.get("components", {}).get("schemas", {})

    def resolve(self, schema: Any) -> Any:
        seen = set()
        while isinstance(schema, dict) and "$ref" in schema and schema["$ref"] not in seen:
            ref = schema["$ref"]
            seen.add(ref)
            schema = self.components.get(ref.rsplit("/", 1)[-1], schema)
        return schema

    def canonical(self, schema: Any, depth: int = 0) -> Any:
        """The schema with references inlined (to a depth) and annotations left out."""
        schema = self.resolve(schema)
        if depth > 20:
            return "..."
        if isinstance(schema, dict):
            return {
                k: self.canonical(v, depth + 1)
                for k, v in sorted(schema.items())
                if k not in _IGNORED
            }
        if isinstance(schema, list):
            return [self.canonical(v, depth + 1) for v in schema]
        return schema


def _text(schemas: _Schemas, schema: Any) -> str:
    return json.dumps(schemas.canonical(schema), sort_keys=True)


def _short(schemas: _Schemas, schema: Any) -> str:
    text = _text(schemas, schema)
    return text if len(text) <= 60 else text[:57] + "..."


class _Comparison:
    def __init__(self, old: Mapping[str, Any], new: Mapping[str, Any], key: str) -> None:
        self.old, self.new, self.key = _Schemas(old), _Schemas(new), key

    def schema(self, path: str, a: Any, b: Any) -> Iterator[Change]:
        a, b = self.old.resolve(a), self.new.resolve(b)
        if _is_object(a) and _is_object(b):
            yield from self.fields(path, a, b)
        elif _is_array(a) and _is_array(b):
            yield from self.schema(f"{path}[]", a.get("items", {}), b.get("items", {}))
        elif _alternatives(a) and len(_alternatives(a)) == len(_alternatives(b)):
            for x, y in zip(_alternatives(a), _alternatives(b), strict=True):
                yield from self.schema(path, x, y)
        elif _text(self.old, a) != _text(self.new, b):
            was, now = _short(self.old, a), _short(self.new, b)
            yield Change(self.key, "type", path, f"type changed from {was} to {now}")

    def fields(self, path: str, a: dict[str, Any], b: dict[str, Any]) -> Iterator[Change]:
        old_props, new_props = a.get("properties", {}), b.get("properties", {})
        old_req, new_req = set(a.get("required", [])), set(b.get("required", []))
        gone = [f for f in old_props if f not in new_props]
        added = [f for f in new_props if f not in old_props]
        for name in gone:
            twin = self._twin(old_props[name], added, new_props)
            if twin is not None:
                added.remove(twin)
                detail = f"renamed to {_join(path, twin)!r}: readers of the old name lose it"
                yield Change(self.key, "renamed", _join(path, name), detail)
            else:
                detail = "removed: readers that expect it fail or lose it"
                yield Change(self.key, "removed", _join(path, name), detail)
        for name in added:
            if name in new_req:
                detail = "new required field: messages written by the old version lack it"
                yield Change(self.key, "required", _join(path, name), detail)
            else:
                yield Change(self.key, "added", _join(path, name), "new optional field")
        for name in old_props:
            if name not in new_props:
                continue
            if name in new_req and name not in old_req:
                detail = "became required: messages written without it no longer decode"
                yield Change(self.key, "required", _join(path, name), detail)
            yield from self.schema(_join(path, name), old_props[name], new_props[name])

    def _twin(self, schema: Any, added: list[str], new_props: dict[str, Any]) -> str | None:
        text = _text(self.old, schema)
        for name in added:
            if _text(self.new, new_props[name]) == text:
                return name
        return None


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _is_object(schema: Any) -> bool:
    return isinstance(schema, dict) and schema.get("type") == "object" and "properties" in schema


def _is_array(schema: Any) -> bool:
    return isinstance(schema, dict) and schema.get("type") == "array"


def _alternatives(schema: Any) -> list[Any]:
    if not isinstance(schema, dict):
        return []
    found = schema.get("anyOf") or schema.get("oneOf") or []
    return list(found) if isinstance(found, list) else []


def compare(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[Change]:
    """Every difference between two AsyncAPI documents' messages; see the module for kinds."""
    old_messages, new_messages = _messages(old), _messages(new)
    changes: list[Change] = []
    for key, message in sorted(old_messages.items()):
        twin = new_messages.get(key)
        if twin is None:
            changes.append(_missing(key, message, new_messages))
            continue
        comparison = _Comparison(old, new, key)
        found = list(comparison.schema("", message.get("payload", {}), twin.get("payload", {})))
        changes.extend(found)
        if found and all(not c.breaking for c in found):
            was, now = message.get("x-seawall-version"), twin.get("x-seawall-version")
            if was == now:
                detail = f"the schema grew but its version stayed {was}; raise the minor version"
                changes.append(Change(key, "version", "", detail))
    return changes


def _missing(key: str, message: Mapping[str, Any], new: Mapping[str, Any]) -> Change:
    name, was = message.get("name"), _major(message)
    higher = [m for m in new.values() if m.get("name") == name and _major(m) > was]
    if higher:
        now = max(str(m.get("x-seawall-version")) for m in higher)
        detail = f"major version bump {message.get('x-seawall-version')} -> {now}"
        return Change(key, "major-bump", "", detail)
    detail = f"message {name} (major {was}) is gone, without a higher major version"
    return Change(key, "message-removed", "", detail)
