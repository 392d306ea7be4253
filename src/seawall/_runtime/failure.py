"""What the dispatcher does with a message it could not handle: the rule, without the I/O.

Sans-IO: :func:`decide` is fed one failed attempt (the error, where it
happened, the attempt number, the message's key and deadline, and ``now``)
and the service's policies, and returns what to do, as a frozen value; the
dispatcher (:mod:`seawall._runtime.dispatcher`) carries it out on the
transport. The rules:

- a message that expired (its deadline passed before a handler started, or a
  handler timed out once it had passed) is not retried: it is dead-lettered
  with reason ``expired``, or dropped if the service says ``expired="drop"``;
  either way its requester is told;
- a message that cannot be taken (its body does not decode, no handler takes
  its type on a command channel, or none takes its major version and no
  upcaster lifts it) is dead-lettered at once: no attempt can ever succeed;
- otherwise the retry policy decides: another attempt after its backoff, unless
  the attempts are used up, the error is not worth retrying, or the deadline
  comes before the next attempt would start; then the message is dead-lettered;
- a retry of a message without a key goes back to the broker when the
  transport can delay a redelivery (its in-flight slot is freed meanwhile);
  a keyed message is parked here instead, so the later messages of its key
  wait behind it and per-key order holds across retries.
"""

from __future__ import annotations

from typing import Literal

import msgspec

from .._exceptions import UnknownMessageType, UnknownVersion
from .retry import RetryPolicy
from .service import Expired

__all__ = [
    "Attempt",
    "DeadLetter",
    "Decision",
    "Expire",
    "Park",
    "Reason",
    "Redeliver",
    "Stage",
    "decide",
]

Reason = Literal["decode-error", "unknown-type", "unknown-version", "handler-error", "expired"]
"""The ``seawall-dlq-reason`` header of a dead letter."""

Stage = Literal["deadline", "decode", "handler"]
"""Where an attempt failed: its deadline had passed before it began, taking the message
(before any handler ran), or in the handler."""


# The attempt and the decisions are frozen msgspec Structs, not dataclasses: a dataclass's
# generated methods are compiled when its module is imported, and these five cost a
# twentieth of ``import seawall``.


class Attempt(msgspec.Struct, frozen=True, kw_only=True):
    """One failed attempt at a message, as the dispatcher saw it."""

    error: BaseException
    stage: Stage
    number: int
    """1-based: the broker's delivery count plus the retries parked here."""
    key: str | None
    """The message's partition key."""
    now: float
    deadline: float | None
    """The message's deadline as a timestamp on the dispatcher's clock, if it has one."""


class Redeliver(msgspec.Struct, frozen=True):
    """Hand the message back to the broker, to be delivered again after ``delay`` seconds."""

    delay: float


class Park(msgspec.Struct, frozen=True):
    """Keep the message here for ``delay`` seconds, then try again; its key's lane waits."""

    delay: float
    key: str | None


class DeadLetter(msgspec.Struct, frozen=True):
    """Give up: send the message to the dead-letter channel and tell its requester."""

    reason: Reason
    why: str
    """Why no further attempt, in a few words for the log."""


class Expire(msgspec.Struct, frozen=True):
    """Its deadline passed and the service drops expired messages: tell the requester,
    settle it, count it, dead-letter nothing."""


Decision = Redeliver | Park | DeadLetter | Expire


def _past(now: float, deadline: float | None) -> bool:
    """Whether a deadline is set and reached."""
    return deadline is not None and now >= deadline


_EXPIRED = DeadLetter("expired", "its deadline passed")


def decide(
    attempt: Attempt, policy: RetryPolicy, *, broker_delays: bool, expired: Expired = "dead-letter"
) -> Decision:
    """What to do after ``attempt`` failed.

    ``broker_delays``: the transport delays redeliveries; ``expired``: the service's
    choice for expired messages.
    """
    if attempt.stage == "decode":
        return _rejected(attempt.error)
    if attempt.stage == "deadline" or (
        # the deadline's own timeout, not one the handler set itself
        isinstance(attempt.error, TimeoutError) and _past(attempt.now, attempt.deadline)
    ):
        return _EXPIRED if expired == "dead-letter" else Expire()
    return _retry_or_give_up(attempt, policy, broker_delays)


def _rejected(error: BaseException) -> DeadLetter:
    if isinstance(error, UnknownVersion):
        return DeadLetter("unknown-version", "no handler takes its version")
    if isinstance(error, UnknownMessageType):
        return DeadLetter("unknown-type", "no handler takes its type")
    return DeadLetter("decode-error", "it does not decode")


def _retry_or_give_up(attempt: Attempt, policy: RetryPolicy, broker_delays: bool) -> Decision:
    number = attempt.number
    delay = policy.backoff(number)
    if not policy.should_retry(attempt.error, number):
        exhausted = number >= policy.max_attempts
        why = f"attempt {number} of {policy.max_attempts}" if exhausted else "not retryable"
        return DeadLetter("handler-error", why)
    if attempt.deadline is not None and attempt.now + delay >= attempt.deadline:
        return DeadLetter("handler-error", "its deadline comes before the next attempt")
    if attempt.key is None and broker_delays:
        return Redeliver(delay)
    return Park(delay, attempt.key)
