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
_SEED = 20
"""Random hex digits per millisecond (80 bits): 3 for ``rand_a``, 1 for the variant's two
random bits, 3 for the top of ``rand_b``, 12 for the count's start (47 of their 48 bits)."""
_POOL = _SEED * 128
_ONE_48 = 1 << 48
"""Set above a count's 48 bits, so that ``hex()`` writes all 12 of them (then cut off)."""
_VARIANT = dict(zip("0123456789abcdef", "89ab" * 4, strict=True))
"""A random hex digit to the variant's digit: ``10`` then its two low bits."""

_lock = threading.Lock()
_last_ms = -1
_current: tuple[str, Iterator[int]] = ("", itertools.count())
"""The current millisecond's text and the count of its ids."""
_time_ns = time.time_ns
_pool = ""  # random hex digits for the next milliseconds, from one os.urandom call per 128
_pos = _POOL


def _seed() -> str:
    """20 fresh random hex digits; call with the lock held."""
    global _pool, _pos
    if _pos >= _POOL:
        _pool, _pos = os.urandom(_POOL // 2).hex(), 0
    start = _pos
    _pos = start + _SEED
    return _pool[start:_pos]


def _start_ms(ms: int) -> None:
    """Make ``ms`` the current millisecond, with fresh random bits; call with the lock held.

    Built from hex digits and small ints only: the text is made at most once per
    millisecond, but under load that is every few hundred ids, and arithmetic on an
    80-bit int (or a format spec) costs several times what slicing hex text does.
    """
    global _last_ms, _current
    digits = _seed()
    stamp = hex(ms | _ONE_48)[3:]  # 12 hex digits
    text = f"{stamp[:8]}-{stamp[8:]}-7{digits[:3]}-{_VARIANT[digits[3]]}{digits[4:7]}-"
    start = int(digits[7:19], 16) >> (48 - _START_BITS)
    _current = (text, itertools.count(start | _ONE_48))
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
    return text + hex(next(count))[3:]  # the count's 12 hex digits, below the bit at 48
