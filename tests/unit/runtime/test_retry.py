"""The retry policy: attempts, exponential backoff, jitter, predicate."""

from __future__ import annotations

import pytest

from seawall import ConfigurationError, RetryPolicy


def test_backoff_grows_exponentially_up_to_the_cap() -> None:
    policy = RetryPolicy(initial_backoff=0.5, multiplier=3, max_backoff=10, jitter=0)
    assert [policy.backoff(a) for a in range(1, 6)] == [0.5, 1.5, 4.5, 10, 10]


@pytest.mark.parametrize(("draw", "expected"), [(0.0, 0.8), (0.5, 1.0), (1.0, 1.2)])
def test_jitter_spreads_the_delay_both_ways(draw: float, expected: float) -> None:
    policy = RetryPolicy(initial_backoff=1, jitter=0.2, random=lambda: draw)
    assert policy.backoff(1) == pytest.approx(expected)


def test_jitter_never_exceeds_the_cap() -> None:
    policy = RetryPolicy(initial_backoff=1, max_backoff=1, jitter=0.5, random=lambda: 1.0)
    assert policy.backoff(7) == 1


def test_attempts_are_counted_including_the_first() -> None:
    policy = RetryPolicy(max_attempts=3)
    error = RuntimeError()
    assert [policy.should_retry(error, a) for a in (1, 2, 3)] == [True, True, False]


def test_predicate_stops_retries_for_permanent_errors() -> None:
    policy = RetryPolicy(retry_on=lambda exc: isinstance(exc, ConnectionError))
    assert policy.should_retry(ConnectionError(), 1)
    assert not policy.should_retry(ValueError(), 1)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"max_attempts": 0}, "max_attempts must be at least 1"),
        ({"jitter": 1.0}, "jitter must be in"),
        ({"initial_backoff": 5, "max_backoff": 1}, "initial_backoff <= max_backoff"),
    ],
)
def test_bad_settings_are_refused(kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        RetryPolicy(**kwargs)  # type: ignore[arg-type]
