"""The garbage collector's settings for a process that only serves the broker.

A broker server makes a few short-lived objects per message (frames, messages,
callbacks) and keeps a large, long-lived heap (the broker's indexes, pages,
sessions). CPython's default collector runs a young-generation pass every 700
allocations and, now and then, a full pass over that whole heap: about 11 % of
the server's CPU per message in the ``seawall://`` throughput benchmark.
:func:`settle_for_serving` moves what start-up built out of the collector's
sight (:func:`gc.freeze`) and collects the young generation every
:data:`YOUNG` allocations instead of 700. Reference counting still frees every
object that is not in a cycle at once; only cycles wait longer.

It changes the whole process, so only a process that is nothing but a broker
server calls it (``seawall broker``), never a library user's process that
merely opens a :class:`~seawall._server.server.BrokerServer`.
"""

from __future__ import annotations

import gc

__all__ = ["YOUNG", "settle_for_serving"]

YOUNG = 50_000
"""Allocations (net of frees) between two young-generation collections."""


def settle_for_serving() -> None:
    """Freeze what start-up built and collect the young generation less often."""
    gc.collect()
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(YOUNG, middle, old)
