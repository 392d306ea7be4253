"""Retry policy: how often and how long to wait before a failed message is tried again.

Sans-IO: the policy computes delays from an attempt number and a random
source; the dispatcher does the waiting on the injected clock.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from .._exceptions import ConfigurationError, RequestError

__all__ = ["RetryPolicy", "Retryable", "not_a_failed_request"]


class Retryable(Protocol):
    """Decides whether an exception is worth another attempt."""

    def __call__(self, exc: BaseException, /) -> bool: ...


def not_a_failed_request(exc: BaseException, /) -> bool:
    """The default: retry anything but a failed request to another service.

    A ``RemoteError`` or ``DeadlineExceeded`` means the service further down
    already retried (and dead-lettered) or the time is up; retrying here too
    would multiply attempts at every hop.
    """
    return not isinstance(exc, RequestError)


@dataclass(frozen=True, kw_only=True)
class RetryPolicy:
    """Attempts and exponential backoff with jitter; after the last attempt, dead-letter."""

    max_attempts: int = 5
    """Total attempts including the first; 1 means no retry."""
    initial_backoff: float = 0.1
    max_backoff: float = 30.0
    multiplier: float = 2.0
    jitter: float = 0.2
    """Each delay is spread uniformly by ± this fraction, so retries do not stampede."""
    retry_on: Retryable = not_a_failed_request
    """Exceptions for which this returns False are dead-lettered at once."""
    random: Callable[[], float] = field(default=random.random, repr=False)

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ConfigurationError(f"max_attempts must be at least 1, got {self.max_attempts}")
        if not 0 <= self.jitter < 1:
            raise ConfigurationError(f"jitter must be in [0, 1), got {self.jitter}")
        if self.initial_backoff < 0 or self.max_backoff < self.initial_backoff:
            raise ConfigurationError(
                f"need 0 <= initial_backoff <= max_backoff, got {self.initial_backoff} "
                f"and {self.max_backoff}"
            )

    def should_retry(self, exc: BaseException, attempt: int) -> bool:
        """Whether attempt number ``attempt`` (1-based), which failed with ``exc``, gets another."""
        return attempt < self.max_attempts and self.retry_on(exc)

    def backoff(self, attempt: int) -> float:
        """Seconds to wait after failed attempt ``attempt`` before the next one."""
        base = min(self.max_backoff, self.initial_backoff * self.multiplier ** (attempt - 1))
        spread = base * self.jitter * (2 * self.random() - 1)
        return max(0.0, min(self.max_backoff, base + spread))
