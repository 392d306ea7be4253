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
"""

from __future__ import annotations

import re
from typing import Any

__all__ = ["MAX_NAMES", "install", "parse_header_lines"]

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
