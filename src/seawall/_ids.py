"""Time-ordered message ids (UUIDv7, RFC 9562).

Ids generated in one process are strictly increasing: within one millisecond
the 12-bit ``rand_a`` field is used as a counter seeded at random, and the
timestamp is borrowed forward if it would overflow, as RFC 9562 section 6.2
(method 3) allows.

Every message gets an id, so this is on the hot path, and an id is put
together from three pieces of ready-made text rather than formatted:

* ``tttttttt-tttt-``, the timestamp, made once per millisecond;
* ``7ccc-``, the version and counter, from a table of all 4,096 counters;
* ``vrrr-rrrrrrrrrrrr``, the variant and 62 random bits, cut from a pool of
  such tails that :func:`_tails` builds from one ``os.urandom`` call per 512
  ids, with bulk slice operations instead of a Python loop per id.

A forked child drops the pool, so parent and child never hand out the same bits.
"""

from __future__ import annotations

import os
import threading
import time

__all__ = ["uuid7"]

_TAILS_PER_POOL = 512
_TAIL = len("vrrr-rrrrrrrrrrrr")
_POOL_END = _TAIL * _TAILS_PER_POOL
_COUNTERS = [f"7{counter:03x}-" for counter in range(0x1000)]
_VARIANT = bytes.maketrans(b"0123456789abcdef", b"89ab89ab89ab89ab")
"""A random hex digit to the first digit of ``rand_b``: variant bits 10, two random bits."""

_last_ms = 0
_counter = 0
_prefix = ""  # "tttttttt-tttt-": the text of _last_ms
_pool = ""  # _TAILS_PER_POOL tails back to back
_pos = _POOL_END  # nothing left: the first id fills the pool
_lock = threading.Lock()
_time_ns = time.time_ns


def _tails(count: int) -> str:
    """``count`` random tails ``vrrr-rrrrrrrrrrrr`` back to back, built column by column."""
    digits = os.urandom(8 * count).hex().encode()
    text = bytearray(b"-" * (_TAIL * count))
    for column in range(16):
        text[column + (column >= 4) :: _TAIL] = digits[column::16]
    text[0::_TAIL] = bytes(text[0::_TAIL]).translate(_VARIANT)
    return text.decode()


def _drop_pool() -> None:
    global _pool, _pos
    _pool, _pos = "", _POOL_END


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_drop_pool)


def _next_tail() -> str:
    """The next random tail; call with ``_lock`` held."""
    global _pool, _pos
    if _pos >= _POOL_END:
        _pool, _pos = _tails(_TAILS_PER_POOL), 0
    start = _pos
    _pos = start + _TAIL
    return _pool[start:_pos]


def _start_ms(ms: int, counter: int) -> None:
    """Make ``ms`` the current millisecond, counting from ``counter``; call with the lock held."""
    global _last_ms, _counter, _prefix
    stamp = f"{ms:012x}"
    _last_ms, _counter, _prefix = ms, counter, f"{stamp[:8]}-{stamp[8:]}-"


def uuid7(now_ms: int | None = None) -> str:
    """Return a new UUIDv7 in its canonical 36-character text form.

    A ``now_ms`` earlier than the last id's timestamp is treated as that
    timestamp, so ids stay increasing when the wall clock steps back.
    """
    global _counter, _pos
    ms = _time_ns() // 1_000_000 if now_ms is None else now_ms
    with _lock:
        if ms > _last_ms:
            # a fresh random start with room to count up: 11 bits of a tail never handed out
            _start_ms(ms, int(_next_tail()[1:4], 16) & 0x7FF)
        elif _counter < 0xFFF:
            _counter += 1
        else:
            _start_ms(_last_ms + 1, 0)
        start = _pos
        if start < _POOL_END:  # _next_tail, inlined: this is the path nearly every id takes
            _pos = start + _TAIL
            return _prefix + _COUNTERS[_counter] + _pool[start:_pos]
        return _prefix + _COUNTERS[_counter] + _next_tail()
