"""Reading received header blocks: nats-py's result, without its per-character name check.

nats-py parses the header block of every message it receives with
``Client._parse_header_lines``, which decodes each header name and checks it
for blanks one character at a time, in a generator. A seawall message carries a
dozen headers (its CloudEvents attributes) whose names repeat message after
message, so on the request/reply path that check was the largest single cost of
reading a message. :func:`parse_header_lines` returns the same dict: each
distinct name is decoded and checked once and remembered (up to
:data:`MAX_NAMES` of them), values are decoded as nats-py decodes them.
:func:`install` puts it on one client, as an attribute of the instance, which
nats-py's own lookup (``self._parse_header_lines``) finds first.

:func:`read_message` goes one step further for the plain messages of the
request/reply path (:mod:`._received`): from the block as received straight to
the :class:`Message`, as ``from_headers`` would build it from the dict nats-py
reads, without the dict. It takes the common case only (a block without a
status line, valid UTF-8, attribute headers named as seawall writes them) and
leaves anything else to the generic path.
"""

from __future__ import annotations

import re
from typing import Any

from ..._messages.envelope import Message, from_attributes, header_attributes

__all__ = ["MAX_NAMES", "install", "parse_header_lines", "read_message"]

MAX_NAMES = 4096
"""Distinct header names remembered; past this, a new name is checked every time."""

_CRLF = b"\r\n"
_BLANK = re.compile(r"\s")  # what str.isspace() finds, on the ASCII a name decodes to
_names: dict[bytes, str | None] = {}  # raw name -> header name, or None: not one


def parse_header_lines(raw: bytes) -> dict[str, str]:
    """The headers of a block of ``Name: Value`` lines, as nats-py 2.16 reads them."""
    out: dict[str, str] = {}
    names = _names
    for line in raw.split(_CRLF):
        if not line:
            continue
        name, sep, value = line.partition(b":")
        if not sep:
            continue
        key = names[name] if name in names else _name(name)
        if key is not None:
            out[key] = value.strip().decode("utf-8", "replace")
    return out


_PLAIN = b"NATS/1.0\r\n"  # a block without a status
_ASCII_BLANKS = " \t\n\r\x0b\x0c"  # what bytes.strip() takes off
_ATTRIBUTES = header_attributes("ce-")
_MAYBE_ATTRIBUTE = ("ce-", "content-type")  # lower-cased, a name from_headers may read
_extras: dict[str, str | None] = {}  # name as received -> header name; None: not one


def read_message(block: bytes, data: bytes) -> Message | None:
    """The message of a header block as received (status line included) and its payload,
    equal to ``from_headers`` of what nats-py reads from the block; None where that needs
    the generic path: a status line, bytes that are not UTF-8, an attribute header
    spelled otherwise than seawall spells it, or headers ``from_headers`` refuses."""
    if not block.startswith(_PLAIN):
        return None
    try:
        text = block[10:].decode()
    except UnicodeDecodeError:
        return None
    attributes = _ATTRIBUTES
    attrs: dict[str, Any] = {}
    extra: dict[str, str] = {}
    for line in text.split("\r\n"):
        name, sep, value = line.partition(":")
        if not sep:
            continue
        attribute = attributes.get(name)
        if attribute is not None:
            attrs[attribute] = value.strip(_ASCII_BLANKS)
            continue
        key = _extras[name] if name in _extras else _extra(name)
        if key is None:
            continue  # nats-py skips the line
        if key.lower().startswith(_MAYBE_ATTRIBUTE):
            return None  # from_headers decides what such a name stands for
        extra[key] = value.strip(_ASCII_BLANKS)
    return from_attributes(attrs, extra, data)


def _extra(name: str) -> str | None:
    """The header name nats-py reads from ``name`` (decoded from the block), or None."""
    raw = name.encode()
    key = _names[raw] if raw in _names else _name(raw)
    if len(_extras) < MAX_NAMES:
        _extras[name] = key
    return key


def _name(raw: bytes) -> str | None:
    """The header name ``raw`` spells, or None where nats-py skips the line."""
    try:
        key: str | None = raw.strip().decode("ascii")
    except UnicodeDecodeError:
        key = None
    if key is not None and _BLANK.search(key):
        key = None
    if len(_names) < MAX_NAMES:
        _names[raw] = key
    return key


def install(client: Any) -> None:
    """Have ``client`` read header blocks with :func:`parse_header_lines` (a nats-py
    without ``_parse_header_lines`` is left as it is)."""
    if callable(getattr(client, "_parse_header_lines", None)):
        client._parse_header_lines = parse_header_lines
