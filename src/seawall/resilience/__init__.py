"""Resilience: how a caller protects itself, and how a responder makes repeats harmless.

Pure state machines fed the time of seawall's injectable clock (so the test
system drives them in virtual time), in the layer below the runtime, which
wires them into ``ctx.request`` and ``ctx.send`` and into its consumers:

- :class:`CircuitBreaker` (:mod:`.breaker`): closed, open, half-open, on the
  failure share of a sliding window of calls, slow calls counted as failures;
- :class:`Bulkhead` (:mod:`.bulkhead`): at most N calls outstanding to a target;
- :class:`CallPolicy`, :class:`Policies`, :class:`RequestRetry` (:mod:`.policy`):
  deadline, bulkhead, breaker and retries, per system, per target and per call;
- :class:`Guards` (:mod:`.guard`): the breaker and bulkhead of each target called;
- :class:`RecentReplies`, :class:`ReplyStore` (:mod:`.replies`): the responder's
  reply cache, which answers a retried request without running its handler again.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .. import _lazy

if TYPE_CHECKING:
    from .breaker import BreakerPolicy, BreakerStats, CircuitBreaker
    from .bulkhead import Bulkhead, BulkheadStats
    from .guard import Guard, Guards
    from .policy import RETRY_HEADER, CallPolicy, Overflow, Policies, RequestRetry
    from .replies import RecentReplies, ReplyStore

__all__ = [
    "RETRY_HEADER",
    "BreakerPolicy",
    "BreakerStats",
    "Bulkhead",
    "BulkheadStats",
    "CallPolicy",
    "CircuitBreaker",
    "Guard",
    "Guards",
    "Overflow",
    "Policies",
    "RecentReplies",
    "ReplyStore",
    "RequestRetry",
]

_LAZY = {
    **dict.fromkeys(["BreakerPolicy", "BreakerStats", "CircuitBreaker"], ".breaker"),
    **dict.fromkeys(["Bulkhead", "BulkheadStats"], ".bulkhead"),
    **dict.fromkeys(["Guard", "Guards"], ".guard"),
    **dict.fromkeys(
        ["RETRY_HEADER", "CallPolicy", "Overflow", "Policies", "RequestRetry"], ".policy"
    ),
    **dict.fromkeys(["RecentReplies", "ReplyStore"], ".replies"),
}
"""Each module loaded on first use of one of its names: every consumer keeps recent replies,
but only a system given call policies (or a service depending on a target) needs the
breakers, bulkheads and policies, whose dataclasses were a tenth of ``import seawall``."""


__getattr__ = _lazy.loader(__name__, _LAZY, globals())
__dir__ = _lazy.exported(globals(), __all__)
