"""Tests for ``uuid7``: canonical UUIDv7 text, embedded time and strict ordering.

``uuid7`` keeps its last timestamp and counter in the process, so the tests
that pass ``now_ms`` start just after the newest id seen so far; that keeps
them independent of test order and leaves later callers at most a few
milliseconds ahead of the wall clock.
"""

from __future__ import annotations

import re
import time
import uuid
from itertools import pairwise

from seawall._ids import uuid7

_CANONICAL = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")


def _as_int(text: str) -> int:
    return int(text.replace("-", ""), 16)


def _timestamp_ms(text: str) -> int:
    return _as_int(text) >> 80


def _counter(text: str) -> int:
    """The 12-bit ``rand_a`` field, which uuid7 uses as a counter within one millisecond."""
    return (_as_int(text) >> 64) & 0xFFF


def _next_free_ms() -> int:
    """A millisecond after every id made so far, so ``uuid7(now_ms=...)`` uses it as given."""
    return _timestamp_ms(uuid7()) + 1


def test_canonical_text_form() -> None:
    text = uuid7()
    assert len(text) == 36
    assert _CANONICAL.match(text), text


def test_parses_as_a_version_7_rfc_uuid() -> None:
    text = uuid7()
    parsed = uuid.UUID(text)
    assert parsed.version == 7
    assert parsed.variant == uuid.RFC_4122
    assert str(parsed) == text


def test_embeds_the_millisecond_passed_in() -> None:
    start = _next_free_ms()
    for step in (0, 1, 2, 37):
        assert _timestamp_ms(uuid7(now_ms=start + step)) == start + step


def test_embeds_the_current_time_by_default() -> None:
    before = time.time_ns() // 1_000_000
    stamp = _timestamp_ms(uuid7())
    after = time.time_ns() // 1_000_000
    # an earlier burst may have borrowed the timestamp a little forward
    assert before <= stamp <= after + 1_000


def test_new_millisecond_starts_the_counter_low_enough_to_count_up() -> None:
    start = _next_free_ms()
    assert all(_counter(uuid7(now_ms=start + step)) <= 0x7FF for step in range(50))


def test_consecutive_ids_strictly_increase_on_the_real_clock() -> None:
    ids = [uuid7() for _ in range(100_000)]
    # lowercase hex of fixed width: text order is numeric order
    assert all(a < b for a, b in pairwise(ids))
    assert len(set(ids)) == len(ids)


def test_ids_in_one_millisecond_increase_and_overflow_borrows_the_next() -> None:
    start = _next_free_ms()
    ids = [uuid7(now_ms=start) for _ in range(100_000)]

    assert all(a < b for a, b in pairwise(ids))
    assert len(set(ids)) == len(ids)
    fields = [(value >> 80, (value >> 64) & 0xFFF) for value in map(_as_int, ids)]
    assert fields[0][0] == start
    for (ms_a, count_a), (ms_b, count_b) in pairwise(fields):
        if ms_a == ms_b:
            assert count_b == count_a + 1
        else:
            # the 12-bit counter ran out: borrow one millisecond, restart at zero
            assert (ms_b, count_a, count_b) == (ms_a + 1, 0xFFF, 0)
    # the first millisecond holds 2049..4096 ids, every later one 4096
    assert fields[-1][0] == start + 24


def test_a_clock_stepping_back_does_not_break_the_order() -> None:
    start = _next_free_ms()
    first = uuid7(now_ms=start)
    second = uuid7(now_ms=start - 5_000)
    assert first < second
    assert _timestamp_ms(second) == start


def test_ids_are_unique_across_milliseconds() -> None:
    start = _next_free_ms()
    ids = [uuid7(now_ms=start + i // 10) for i in range(1_000)]
    assert len(set(ids)) == len(ids)
    assert all(a < b for a, b in pairwise(ids))
