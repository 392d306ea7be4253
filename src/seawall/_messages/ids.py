"""Time-ordered message ids (UUIDv7, RFC 9562).

Ids are unique, and those one thread generates strictly increase (ids from
threads racing over a millisecond's turn may interleave). Each millisecond gets
a fresh random start for the 74 bits after the timestamp, and the ids of that
millisecond count up from it by one: the "monotonic random" method of RFC
9562, section 6.2 (method 2). The count runs in the last 48 bits and starts
below 2**47, so it cannot run out within a millisecond.

Every message gets an id, so this is on the hot path. An id is the text made
once per millisecond (``tttttttt-tttt-7aaa-vbbb-``: timestamp, version,
``rand_a``, variant and the top of ``rand_b``) followed by the 12 hex digits
of the count. The count is an :func:`itertools.count`, whose ``next`` is one
indivisible step, so the common path takes no lock; the lock is held only to
start a new millisecond. The millisecond's text and its count are swapped in
together, as one tuple.

The random bits come from a pool filled by one ``os.urandom`` call per 128
milliseconds. A forked child drops the pool and starts a millisecond of its
own at its first id, so parent and child never hand out the same id.
"""

from __future__ import annotations

import itertools
import os
import threading
import time
from collections.abc import Iterator

__all__ = ["uuid7"]

_START_BITS = 47
"""Random bits of a millisecond's first count: 2**47 ids of headroom below 2**48."""
_SEED = 10
"""Random bytes per millisecond: 80 bits, 75 of them used."""
_POOL = _SEED * 128

_lock = threading.Lock()
_last_ms = -1
_current: tuple[str, Iterator[int]] = ("", itertools.count())
"""The current millisecond's text and the count of its ids."""
_time_ns = time.time_ns
_pool = b""  # random bytes for the next milliseconds, from one os.urandom call per 128
_pos = _POOL


def _seed() -> int:
    """80 fresh random bits; call with the lock held."""
    global _pool, _pos
    if _pos >= _POOL:
        _pool, _pos = os.urandom(_POOL), 0
    start = _pos
    _pos = start + _SEED
    return int.from_bytes(_pool[start:_pos], "big")


def _start_ms(ms: int) -> None:
    """Make ``ms`` the current millisecond, with fresh random bits; call with the lock held."""
    global _last_ms, _current
    bits = _seed()
    rand_a = bits & 0xFFF
    variant = 0x8 | ((bits >> 12) & 0x3)  # 10 then two random bits
    high_b = (bits >> 14) & 0xFFF
    start = (bits >> 26) & ((1 << _START_BITS) - 1)
    stamp = f"{ms:012x}"
    text = f"{stamp[:8]}-{stamp[8:]}-7{rand_a:03x}-{variant:x}{high_b:03x}-"
    _current = (text, itertools.count(start))
    _last_ms = ms


def _restart() -> None:
    global _last_ms, _pos
    _last_ms, _pos = -1, _POOL  # neither the millisecond nor the pool is shared


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_restart)


def uuid7(now_ms: int | None = None) -> str:
    """Return a new UUIDv7 in its canonical 36-character text form.

    A ``now_ms`` earlier than the last id's timestamp is treated as that
    timestamp, so ids stay increasing when the wall clock steps back.
    """
    ms = _time_ns() // 1_000_000 if now_ms is None else now_ms
    if ms > _last_ms:
        with _lock:
            if ms > _last_ms:  # another thread may have started it meanwhile
                _start_ms(ms)
    text, count = _current
    return f"{text}{next(count):012x}"
