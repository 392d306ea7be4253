"""The key a broker deduplicates a publish by: one rule for every transport that drops
repeated publishes (NATS JetStream's ``Nats-Msg-Id``, the embedded broker's duplicate
window).

A publish retried after a lost acknowledgement keeps its message id, so the id alone
makes the retry a duplicate the broker drops. But the runtime also publishes the same id
again on purpose, and those must not be dropped:

* a dead letter is a new publish of a message that already had its id (with the
  dead-letter headers); distinct messages may share an id too (any producer picks one),
  so its key also covers its body and headers: the same dead letter retried is still
  dropped, another one is not;
* a request the requester sends again carries ``seawall-retry: N``: a new publish per N;
* a message republished from a dead-letter channel (a redrive) carries a header naming
  it; like a dead letter, it is keyed by id and digest.
"""

from __future__ import annotations

import hashlib

from .._messages.envelope import DLQ_REASON, Message

__all__ = ["REPUBLISHED", "RETRY_HEADER", "dedupe_key"]

RETRY_HEADER = "seawall-retry"
"""The header of a request sent again on purpose (``seawall.resilience.RETRY_HEADER``:
the same string, kept here so this layer needs nothing above it)."""

REPUBLISHED: tuple[str, ...] = (DLQ_REASON, "seawall-redrive-of")
"""Headers that mark a publish of an id that was already published (a dead letter, a
redrive): such a publish is keyed by its id and a digest of its body and headers."""


def dedupe_key(message: Message) -> str:
    """The key under which a broker drops a repeat of ``message``'s publish."""
    headers = message.headers
    if headers:
        for name in REPUBLISHED:
            if name in headers:
                return f"{message.id}.dlq.{_digest(message)}"
        retry = headers.get(RETRY_HEADER)
        if retry is not None:
            return f"{message.id}.retry.{retry}"
    return message.id


def _digest(message: Message) -> str:
    digest = hashlib.blake2b(message.data, digest_size=12)
    for name in sorted(message.headers):
        digest.update(f"\0{name}\0{message.headers[name]}".encode())
    return digest.hexdigest()
