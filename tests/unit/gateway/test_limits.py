"""The sans-IO edge state: token buckets per key and the response cache, fed ``now``."""

from __future__ import annotations

import pytest

from seawall import ConfigurationError
from seawall.gateway import RateLimit, ResponseCache, TokenBuckets


def test_a_bucket_grants_its_burst_then_refills_at_its_rate() -> None:
    buckets = TokenBuckets(RateLimit(rate=2.0, burst=3))
    assert [buckets.take("alice", 100.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert buckets.take("alice", 100.0) == pytest.approx(0.5)
    assert buckets.take("bob", 100.0) == 0.0  # every key has its own bucket
    assert buckets.take("alice", 100.5) == 0.0  # one token back after 1/rate seconds
    assert buckets.take("alice", 100.5) > 0.0
    assert [buckets.take("alice", 200.0) for _ in range(3)] == [0.0] * 3  # full, not more


def test_buckets_are_bounded_by_forgetting_the_least_recent_key() -> None:
    buckets = TokenBuckets(RateLimit(rate=1.0, burst=1, max_keys=2))
    for key in ("a", "b", "c"):
        buckets.take(key, 0.0)
    assert len(buckets) == 2
    assert buckets.take("a", 0.0) == 0.0  # forgotten, so full again
    assert buckets.take("c", 0.0) > 0.0


@pytest.mark.parametrize(("rate", "burst"), [(0.0, 1), (1.0, 0), (-1.0, 5)])
def test_a_rate_limit_that_cannot_work_is_refused(rate: float, burst: int) -> None:
    with pytest.raises(ConfigurationError, match="need rate > 0"):
        RateLimit(rate=rate, burst=burst)


def test_the_cache_keeps_a_body_for_its_time_to_live_and_stays_bounded() -> None:
    cache = ResponseCache(max_entries=2)
    cache.put("/a", b"A", ttl=10.0, now=0.0)
    assert cache.get("/a", 4.0) == (b"A", 4.0)
    assert cache.get("/a", 10.0) is None
    cache.put("/a", b"A", ttl=10.0, now=0.0)
    cache.put("/b", b"B", ttl=10.0, now=0.0)
    cache.get("/a", 1.0)  # /a is now the most recent
    cache.put("/c", b"C", ttl=10.0, now=1.0)
    assert len(cache) == 2
    assert cache.get("/b", 1.0) is None
    assert (cache.hits, cache.misses) == (2, 2)
