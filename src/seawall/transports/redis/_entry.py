"""A seawall message as a Redis stream entry, and back.

CloudEvents binary mode with the ``ce_`` attribute prefix (as the Kafka
binding names them): fields ``ce_id``, ``ce_type``, ``ce_source``,
``ce_specversion``, the other attributes, ``content-type``, extra headers as
they are, and the payload as ``data``, so any Redis client reads them.
"""

from __future__ import annotations

from ..._exceptions import ConfigurationError, DecodeError
from ..._messages.envelope import Message, from_headers, to_headers

__all__ = ["BODY", "PREFIX", "decode", "encode"]

PREFIX = "ce_"
BODY = "data"
_BODY = BODY.encode()


def encode(message: Message) -> list[str | bytes]:
    """The stream entry's fields, flat: CloudEvents attributes, headers, then the body."""
    fields: list[str | bytes] = []
    for key, value in to_headers(message, PREFIX).items():
        if key == BODY:
            raise ConfigurationError(
                f"message {message.id} has a header named {BODY!r}, the field that holds the "
                "body on Redis; rename the header"
            )
        fields += (key, value)
    fields += (BODY, message.data)
    return fields


def decode(fields: dict[bytes, bytes], channel: str, entry: bytes) -> Message:
    """The message of a stream entry; one that is no seawall message is kept, undecodable."""
    body = fields.get(_BODY, b"")
    try:
        headers = {k.decode(): v.decode() for k, v in fields.items() if k != _BODY}
        return from_headers(headers, body, PREFIX)
    except (DecodeError, UnicodeDecodeError) as exc:
        # Handed on under a type no handler has, so the dispatcher dead-letters it
        # with the reason instead of losing it.
        text = {k.decode(errors="replace"): v.decode(errors="replace") for k, v in fields.items()}
        text.pop(BODY, None)
        return Message(
            id=f"redis-{channel}-{entry.decode()}",
            type="seawall.redis.Undecodable",
            source=f"redis:{channel}",
            data=body,
            headers={**text, "seawall-decode-error": str(exc)},
        )
