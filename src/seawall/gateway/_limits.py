"""Sans-IO edge state of the gateway: per-key token buckets and the response cache.

Pure objects fed ``now`` (seconds, from seawall's injectable clock), so their
tests never sleep. Both are bounded: past ``max_keys`` / ``max_entries`` the
least recently used entry goes (a forgotten bucket is a full one, which only
ever errs towards letting a request through).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

from .._exceptions import ConfigurationError

__all__ = ["RateLimit", "ResponseCache", "TokenBuckets"]


@dataclass(frozen=True, kw_only=True)
class RateLimit:
    """``rate`` requests per second per key on average, bursts of up to ``burst``."""

    rate: float
    burst: int
    max_keys: int = 10_000

    def __post_init__(self) -> None:
        if self.rate <= 0 or self.burst < 1 or self.max_keys < 1:
            raise ConfigurationError(
                f"RateLimit(rate={self.rate}, burst={self.burst}, max_keys={self.max_keys}): "
                "need rate > 0 requests per second, burst >= 1 and max_keys >= 1"
            )


class TokenBuckets:
    """One token bucket per key (an API key, a JWT subject, a client address)."""

    def __init__(self, limit: RateLimit) -> None:
        self.limit = limit
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()
        """key -> (tokens, when they were counted)."""

    def take(self, key: str, now: float) -> float:
        """Take one token for ``key``: 0.0 if granted, else the seconds until one is there."""
        limit = self.limit
        tokens, then = self._buckets.pop(key, (float(limit.burst), now))
        tokens = min(float(limit.burst), tokens + max(0.0, now - then) * limit.rate)
        wait = 0.0
        if tokens >= 1.0:
            tokens -= 1.0
        else:
            wait = (1.0 - tokens) / limit.rate
        self._buckets[key] = (tokens, now)
        if len(self._buckets) > limit.max_keys:
            self._buckets.popitem(last=False)
        return wait

    def __len__(self) -> int:
        return len(self._buckets)


class ResponseCache:
    """Responses of idempotent reads, each kept for its route's time to live."""

    def __init__(self, max_entries: int = 1024) -> None:
        self.max_entries = max_entries
        self._entries: OrderedDict[str, tuple[float, float, bytes]] = OrderedDict()
        """key -> (stored at, expires at, body)."""
        self.hits = 0
        self.misses = 0

    def get(self, key: str, now: float) -> tuple[bytes, float] | None:
        """The body stored under ``key`` and its age in seconds, or None if absent or stale."""
        entry = self._entries.get(key)
        if entry is None or entry[1] <= now:
            if entry is not None:
                del self._entries[key]
            self.misses += 1
            return None
        self._entries.move_to_end(key)
        self.hits += 1
        return entry[2], now - entry[0]

    def put(self, key: str, body: bytes, ttl: float, now: float) -> None:
        self._entries[key] = (now, now + ttl, body)
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)

    def __len__(self) -> int:
        return len(self._entries)
