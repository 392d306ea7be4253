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
* a message republished from a dead-letter channel (a redrive) carries the key of the
  dead letter it was (``seawall-redrive-of``): a second redrive of it is dropped.
"""

from __future__ import annotations

import hashlib

from .._messages.envelope import DLQ_REASON, REDRIVE_OF, RETRY_HEADER, Message

__all__ = ["dedupe_key"]


def dedupe_key(message: Message) -> str:
    """The key under which a broker drops a repeat of ``message``'s publish."""
    headers = message.headers
    if headers:
        redriven = headers.get(REDRIVE_OF)
        if redriven is not None:
            return f"{message.id}.redrive.{redriven}"
        if DLQ_REASON in headers:
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
