"""The dispatcher's decision for a failed message, as a table: an attempt in, a decision out."""

from __future__ import annotations

from typing import Any

import pytest

from seawall import (
    DeadlineExceeded,
    DecodeError,
    RemoteError,
    RetryPolicy,
    UnknownMessageType,
    UnknownVersion,
)
from seawall._runtime.failure import (
    Attempt,
    DeadLetter,
    Decision,
    Expire,
    Park,
    Redeliver,
    Stage,
    decide,
)
from seawall._runtime.service import Expired

NOW = 1000.0

# backoff after attempt 1, 2, 3: 0.1, 0.2, 0.4 s (no jitter)
POLICY = RetryPolicy(max_attempts=3, initial_backoff=0.1, max_backoff=1.0, jitter=0.0)
ONLY_CONNECTION_ERRORS = RetryPolicy(
    max_attempts=3,
    initial_backoff=0.1,
    jitter=0.0,
    retry_on=lambda exc: isinstance(exc, ConnectionError),
)
CAPPED = RetryPolicy(max_attempts=20, initial_backoff=0.1, max_backoff=1.0, jitter=0.0)
# 0.5 s spread by +50 % (the random source at its top): 0.75 s
JITTERY = RetryPolicy(max_attempts=3, initial_backoff=0.5, jitter=0.5, random=lambda: 1.0)


def failed(
    error: BaseException,
    *,
    number: int = 1,
    key: str | None = None,
    deadline: float | None = None,
    stage: Stage = "handler",
) -> Attempt:
    """An attempt whose handler raised ``error`` (or, ``stage="decode"``, that was not taken)."""
    return Attempt(error=error, stage=stage, number=number, key=key, now=NOW, deadline=deadline)


def rejected(error: BaseException, **attempt: Any) -> Attempt:
    """An attempt that failed before any handler ran."""
    return failed(error, stage="decode", **attempt)


def late(**attempt: Any) -> Attempt:
    """A message whose deadline had passed before any handler started."""
    return failed(DeadlineExceeded("late"), stage="deadline", deadline=NOW - 1, **attempt)


def row(
    name: str,
    attempt: Attempt,
    expected: Decision,
    *,
    policy: RetryPolicy = POLICY,
    broker_delays: bool = True,
    expired: Expired = "dead-letter",
) -> Any:
    return pytest.param(attempt, policy, broker_delays, expired, expected, id=name)


def exhausted(number: int, of: int = 3) -> DeadLetter:
    return DeadLetter("handler-error", f"attempt {number} of {of}")


NOT_RETRYABLE = DeadLetter("handler-error", "not retryable")
TOO_LATE = DeadLetter("handler-error", "its deadline comes before the next attempt")
UNDECODABLE = DeadLetter("decode-error", "it does not decode")
UNKNOWN = DeadLetter("unknown-type", "no handler takes its type")
UNKNOWN_VERSION = DeadLetter("unknown-version", "no handler takes its version")
EXPIRED = DeadLetter("expired", "its deadline passed")

TABLE = [
    # -- a message no attempt can take is dead-lettered at once, whatever else holds
    row("body does not decode", rejected(DecodeError("bad")), UNDECODABLE),
    row("no handler for the type", rejected(UnknownMessageType("x")), UNKNOWN),
    row("undecodable, keyed", rejected(DecodeError("b"), key="k"), UNDECODABLE),
    row("undecodable, past deadline", rejected(DecodeError("b"), deadline=NOW - 1), UNDECODABLE),
    row("unknown type, 9th delivery", rejected(UnknownMessageType("x"), number=9), UNKNOWN),
    row("no handler takes its major", rejected(UnknownVersion("v9")), UNKNOWN_VERSION),
    row("unknown major, keyed", rejected(UnknownVersion("v9"), key="k"), UNKNOWN_VERSION),
    row(
        "undecodable and past the deadline, drop chosen",
        rejected(DecodeError("b"), deadline=NOW - 1),
        UNDECODABLE,
        expired="drop",
    ),
    # -- retried: unkeyed by the broker when it can delay, else parked here
    row("unkeyed: back to the broker", failed(ValueError()), Redeliver(0.1)),
    row("second attempt backs off more", failed(ValueError(), number=2), Redeliver(0.2)),
    row("unkeyed, broker cannot delay", failed(ValueError()), Park(0.1, None), broker_delays=False),
    row("keyed: parked, its lane waits", failed(ValueError(), key="o-7"), Park(0.1, "o-7")),
    row("keyed, second attempt", failed(ValueError(), number=2, key="k"), Park(0.2, "k")),
    row(
        "keyed, broker cannot delay",
        failed(OSError(), key="k"),
        Park(0.1, "k"),
        broker_delays=False,
    ),
    row("handler raised UnknownMessageType", failed(UnknownMessageType("x")), Redeliver(0.1)),
    # -- attempts used up
    row("last attempt failed", failed(ValueError(), number=3), exhausted(3)),
    row("broker counted beyond the limit", failed(ValueError(), number=7), exhausted(7)),
    row("keyed, last attempt", failed(ValueError(), number=3, key="k"), exhausted(3)),
    row("exhausted beats too late", failed(ValueError(), number=3, deadline=NOW), exhausted(3)),
    # -- not worth retrying: a failed request downstream was retried there already
    row("remote error downstream", failed(RemoteError("ValueError", "no", "stock")), NOT_RETRYABLE),
    row(
        "downstream deadline, ours ahead",
        failed(DeadlineExceeded(), deadline=NOW + 9),
        NOT_RETRYABLE,
    ),
    row("downstream deadline, ours passed", failed(DeadlineExceeded(), deadline=NOW), EXPIRED),
    # -- expired: dead-lettered (a record that it existed), unless the service drops it
    row("expired before it started", late(), EXPIRED),
    row("expired before it started, keyed", late(key="k"), EXPIRED),
    row("expired on its 5th delivery", late(number=5), EXPIRED),
    row("expired, dropped by choice", late(), Expire(), expired="drop"),
    row("expired keyed, dropped by choice", late(key="k"), Expire(), expired="drop"),
    row("timeout once the deadline passed", failed(TimeoutError(), deadline=NOW - 0.5), EXPIRED),
    row("timeout exactly at the deadline", failed(TimeoutError(), deadline=NOW), EXPIRED),
    row("keyed timeout past the deadline", failed(TimeoutError(), key="k", deadline=NOW), EXPIRED),
    row(
        "timeout past the deadline, dropped",
        failed(TimeoutError(), deadline=NOW),
        Expire(),
        expired="drop",
    ),
    row(
        "downstream deadline, ours passed, dropped",
        failed(DeadlineExceeded(), deadline=NOW),
        Expire(),
        expired="drop",
    ),
    row(
        "expiry beats the last attempt",
        failed(TimeoutError(), number=3, deadline=NOW),
        EXPIRED,
    ),
    # -- deadlines that leave the retry policy in charge
    row(
        "handler's own timeout, time left", failed(TimeoutError(), deadline=NOW + 5), Redeliver(0.1)
    ),
    row("handler's own timeout, no deadline", failed(TimeoutError()), Redeliver(0.1)),
    row("other error past the deadline", failed(ValueError(), deadline=NOW - 1), TOO_LATE),
    row(
        "other error past it, drop chosen",
        failed(ValueError(), deadline=NOW - 1),
        TOO_LATE,
        expired="drop",
    ),
    row("next attempt exactly at deadline", failed(ValueError(), deadline=NOW + 0.1), TOO_LATE),
    row("next attempt just in time", failed(ValueError(), deadline=NOW + 0.11), Redeliver(0.1)),
    row("keyed, just in time", failed(ValueError(), key="k", deadline=NOW + 0.11), Park(0.1, "k")),
    # -- the policy decides what is retried and how long to wait
    row("retry_on refuses", failed(ValueError()), NOT_RETRYABLE, policy=ONLY_CONNECTION_ERRORS),
    row(
        "retry_on accepts", failed(ConnectionError()), Redeliver(0.1), policy=ONLY_CONNECTION_ERRORS
    ),
    row("backoff capped", failed(ValueError(), number=10), Redeliver(1.0), policy=CAPPED),
    row("a higher limit", failed(ValueError(), number=20), exhausted(20, 20), policy=CAPPED),
    row("jitter spreads the delay", failed(ValueError()), Redeliver(0.75), policy=JITTERY),
    row(
        "jitter counts for the deadline",
        failed(ValueError(), deadline=NOW + 0.6),
        TOO_LATE,
        policy=JITTERY,
    ),
]


@pytest.mark.parametrize(("attempt", "policy", "broker_delays", "expired", "expected"), TABLE)
def test_decision(
    attempt: Attempt,
    policy: RetryPolicy,
    broker_delays: bool,
    expired: Expired,
    expected: Decision,
) -> None:
    assert decide(attempt, policy, broker_delays=broker_delays, expired=expired) == expected


def test_a_rejected_message_never_reaches_the_retry_policy() -> None:
    asked: list[BaseException] = []

    def retry_on(exc: BaseException, /) -> bool:
        asked.append(exc)
        return True

    policy = RetryPolicy(max_attempts=3, retry_on=retry_on)
    assert decide(rejected(DecodeError("bad")), policy, broker_delays=True) == UNDECODABLE
    assert asked == []
