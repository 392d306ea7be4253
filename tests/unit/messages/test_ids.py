"""Tests for ``uuid7``: canonical UUIDv7 text, embedded time and strict ordering.

``uuid7`` keeps its last timestamp and count in the process, so the tests
that pass ``now_ms`` start just after the newest id seen so far; that keeps
them independent of test order and leaves later callers at most a few
milliseconds ahead of the wall clock.
"""

from __future__ import annotations

import os
import re
import threading
import time
import uuid
from itertools import pairwise

from seawall import uuid7

_CANONICAL = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")


def _as_int(text: str) -> int:
    return int(text.replace("-", ""), 16)


def _timestamp_ms(text: str) -> int:
    return _as_int(text) >> 80


def _rand_a(text: str) -> int:
    """The 12-bit ``rand_a`` field: random, the same for every id of one millisecond."""
    return (_as_int(text) >> 64) & 0xFFF


def _count(text: str) -> int:
    """The last 48 bits, which count up by one within a millisecond."""
    return _as_int(text) & ((1 << 48) - 1)


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


def test_a_new_millisecond_starts_its_count_low_enough_to_count_up() -> None:
    start = _next_free_ms()
    firsts = [uuid7(now_ms=start + step) for step in range(50)]
    assert all(_count(text) < 1 << 47 for text in firsts)
    assert len({_count(text) for text in firsts}) == len(firsts)  # random, not reset to 0


def test_consecutive_ids_strictly_increase_on_the_real_clock() -> None:
    ids = [uuid7() for _ in range(100_000)]
    # lowercase hex of fixed width: text order is numeric order
    assert all(a < b for a, b in pairwise(ids))
    assert len(set(ids)) == len(ids)


def test_ids_in_one_millisecond_count_up_by_one_after_a_random_start() -> None:
    start = _next_free_ms()
    ids = [uuid7(now_ms=start) for _ in range(100_000)]

    assert all(_CANONICAL.match(text) for text in ids)
    assert all(a < b for a, b in pairwise(ids))
    assert {_timestamp_ms(text) for text in ids} == {start}  # nothing borrowed
    assert len({text[:24] for text in ids}) == 1  # timestamp, rand_a, variant: one text
    assert len({_rand_a(text) for text in ids}) == 1
    counts = [_count(text) for text in ids]
    assert all(b == a + 1 for a, b in pairwise(counts))


def _first_id_in_a_child(now_ms: int) -> str:
    """The first id a forked child of this process makes, at ``now_ms``."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.write(write, uuid7(now_ms=now_ms).encode())
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read) as pipe:
        text = pipe.read()
    os.waitpid(pid, 0)
    return text


def test_a_forked_child_starts_a_millisecond_of_its_own() -> None:
    start = _next_free_ms()
    uuid7(now_ms=start)
    child = _first_id_in_a_child(start)
    assert _CANONICAL.match(child), child
    # had it kept the parent's millisecond, it would have handed out the parent's next id
    assert child != uuid7(now_ms=start)


def test_a_forked_child_does_not_share_the_random_pool() -> None:
    start = _next_free_ms()
    uuid7(now_ms=start)
    child = _first_id_in_a_child(start + 1)
    # with the parent's pool, it would have seeded the next millisecond as the parent does
    assert child != uuid7(now_ms=start + 1)


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


def test_ids_made_on_several_threads_at_once_are_unique_and_increase_per_thread() -> None:
    per_thread: list[list[str]] = [[] for _ in range(4)]

    def make(out: list[str]) -> None:
        for _ in range(20_000):
            out.append(uuid7())

    threads = [threading.Thread(target=make, args=(out,)) for out in per_thread]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    every = [text for out in per_thread for text in out]
    assert len(set(every)) == len(every)
    assert all(a < b for out in per_thread for a, b in pairwise(out))
