"""A dead letter as an operator reads it: envelope, headers, reason, error and body.

Shared by ``seawall dlq show`` and the web console. The body is decoded with
the payload class of its type when the caller knows it (a
:class:`~seawall._messages.payload.TypeRegistry`, from ``--app MODULE:ATTR``),
else shown as the JSON it is, else as text: an operator reads a body that no
longer decodes (the usual reason a message is dead) as it came.
"""

from __future__ import annotations

import json
from typing import Any

import msgspec

from .._exceptions import MessageError
from .._messages.codec import codec_for
from .._messages.envelope import DLQ_HEADERS
from .._messages.payload import TypeRegistry
from .deadletters import DeadLetter

__all__ = ["body_of", "describe"]


def body_of(letter: DeadLetter, registry: TypeRegistry | None = None) -> tuple[str, Any]:
    """How the body reads (``decoded``, ``json``, ``text``, ``bytes``) and what it says."""
    message = letter.message
    if registry is not None and message.type in registry:
        try:
            cls = registry.resolve(message.type, message.dataschema)
            payload = codec_for(message.datacontenttype).decode(message.data, cls)
            return "decoded", msgspec.to_builtins(payload)
        except MessageError:
            pass  # shown raw below: not decoding is often why it is dead
    try:
        return "json", json.loads(message.data)
    except ValueError:
        pass
    try:
        return "text", message.data.decode()
    except UnicodeDecodeError:
        return "bytes", message.data.hex()


def describe(letter: DeadLetter, registry: TypeRegistry | None = None) -> dict[str, Any]:
    """Everything about ``letter``, as plain data (JSON for the page, lines for the CLI)."""
    message = letter.message
    envelope = msgspec.to_builtins(msgspec.structs.replace(message, data=b"", headers={}))
    envelope.pop("data", None)
    envelope.pop("headers", None)
    how, body = body_of(letter, registry)
    return {
        "key": letter.key,
        "dlq": letter.dlq,
        "reason": letter.reason,
        "error": letter.error,
        "attempts": letter.attempts,
        "channel": letter.origin,
        "group": letter.group,
        "at": letter.at.isoformat() if letter.at else "",
        "envelope": envelope,
        "headers": {k: v for k, v in message.headers.items() if k not in DLQ_HEADERS},
        "body_as": how,
        "body": body,
    }
