"""Time-ordered message ids (UUIDv7, RFC 9562).

Ids generated in one process are strictly increasing: within one millisecond
the 12-bit ``rand_a`` field is used as a counter seeded at random, and the
timestamp is borrowed forward if it would overflow, as RFC 9562 section 6.2
(method 3) allows.

Every message gets an id, so this is on the hot path: the random bits are
cut from a pool of ``os.urandom`` bytes kept as hex text and refilled in
blocks (one system call per 256 ids rather than one per id), and the text of
the timestamp is built once per millisecond. A forked child drops the pool,
so parent and child never hand out the same bits.
"""

from __future__ import annotations

import os
import threading
import time

__all__ = ["uuid7"]

_POOL_BYTES = 4096
_VARIANT = {f"{n:x}": "89ab"[n & 3] for n in range(16)}
"""A random hex digit to the first digit of ``rand_b``: variant bits 10, two random bits."""

_last_ms = 0
_counter = 0
_prefix_ms = -1
_prefix = ""  # "tttttttt-tttt-": the text of _prefix_ms
_pool = ""  # random hex digits
_pos = 0
_lock = threading.Lock()


def _drop_pool() -> None:
    global _pool, _pos
    _pool, _pos = "", 0


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_drop_pool)


def _random_hex(digits: int) -> str:
    """``digits`` random hex digits; call with ``_lock`` held."""
    global _pool, _pos
    if _pos + digits > len(_pool):
        _pool, _pos = os.urandom(_POOL_BYTES).hex(), 0
    start, _pos = _pos, _pos + digits
    return _pool[start:_pos]


def uuid7(now_ms: int | None = None) -> str:
    """Return a new UUIDv7 in its canonical 36-character text form.

    A ``now_ms`` earlier than the last id's timestamp is treated as that
    timestamp, so ids stay increasing when the wall clock steps back.
    """
    global _last_ms, _counter, _prefix, _prefix_ms
    ms = time.time_ns() // 1_000_000 if now_ms is None else now_ms
    with _lock:
        if ms > _last_ms:
            _last_ms = ms
            _counter = int(_random_hex(3), 16) & 0x7FF  # room to count up
        else:
            _counter += 1
            if _counter > 0xFFF:
                _last_ms += 1
                _counter = 0
        if _prefix_ms != _last_ms:
            stamp = f"{_last_ms:012x}"
            _prefix, _prefix_ms = f"{stamp[:8]}-{stamp[8:]}-", _last_ms
        prefix, counter = _prefix, _counter
        rand_b = _random_hex(16)
    return f"{prefix}7{counter:03x}-{_VARIANT[rand_b[0]]}{rand_b[1:4]}-{rand_b[4:]}"
