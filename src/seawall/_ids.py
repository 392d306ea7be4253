"""Time-ordered message ids (UUIDv7, RFC 9562).

Ids generated in one process are strictly increasing: within one millisecond
the 12-bit ``rand_a`` field is used as a counter seeded at random, and the
timestamp is borrowed forward if it would overflow, as RFC 9562 section 6.2
(method 3) allows.
"""

from __future__ import annotations

import os
import threading
import time

__all__ = ["uuid7"]

_last_ms = 0
_counter = 0
_lock = threading.Lock()


def uuid7(now_ms: int | None = None) -> str:
    """Return a new UUIDv7 in its canonical 36-character text form.

    A ``now_ms`` earlier than the last id's timestamp is treated as that
    timestamp, so ids stay increasing when the wall clock steps back.
    """
    global _last_ms, _counter
    ms = time.time_ns() // 1_000_000 if now_ms is None else now_ms
    with _lock:
        if ms > _last_ms:
            _last_ms = ms
            _counter = int.from_bytes(os.urandom(2), "big") & 0x7FF  # room to count up
        else:
            _counter += 1
            if _counter > 0xFFF:
                _last_ms += 1
                _counter = 0
        stamp, counter = _last_ms, _counter
    rand_b = int.from_bytes(os.urandom(8), "big") & 0x3FFF_FFFF_FFFF_FFFF
    value = (stamp << 80) | (0x7 << 76) | (counter << 64) | (0b10 << 62) | rand_b
    h = f"{value:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"
