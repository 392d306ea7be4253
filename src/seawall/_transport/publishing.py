"""Publish until stored: the retry loop of every broker adapter's publish, written once.

A publish returns once the broker has stored the message as durably as the transport
declares, or raises. Two failures lose nothing and are worth waiting out, up to the
transport's ``publish_timeout`` (``None``: for ever):

* the channel is full (:class:`ChannelFull`): consumers are behind and a later try may
  find room;
* the link is lost (:class:`ConnectionLost`): the driver reconnects meanwhile.

Tries are spaced 5 ms apart at first, doubling to 200 ms, never past the deadline. When
time is up the last failure is raised, with one exception: a last try that our own
deadline cut short (it had less time than a broker answer may take) says nothing about
the link, so a full channel seen before stays the reason given.

:class:`Retries` is the sans-IO schedule, fed ``now``; :func:`until_stored` is the loop
that drives one publish with it on the transport's clock.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable

from .._clock import Clock
from .._exceptions import ChannelFull, ConnectionLost, TransportError

__all__ = ["Attempt", "Retries", "until_stored"]

FIRST_PAUSE = 0.005
LONGEST_PAUSE = 0.2
SHORTEST_TRY = 0.001

Attempt = Callable[[float | None], Awaitable[bool | ChannelFull]]
"""One try given the seconds it may take (``None``: no limit). ``True``: stored (or
knowingly dropped); ``False``: try again at once (e.g. a deleted stream to look up again);
:class:`ChannelFull`: no room yet. A lost link is raised as :class:`ConnectionLost`."""


class Retries:
    """When the next try of one publish happens, and when to give up (sans-IO)."""

    def __init__(self, timeout: float | None, now: float, *, answer: float = math.inf) -> None:
        self.deadline = None if timeout is None else now + timeout
        self.answer = answer  # the longest a broker answer may take
        self.pause = FIRST_PAUSE
        self.full: ChannelFull | None = None

    def budget(self, now: float) -> float | None:
        """Seconds the next try may take."""
        return None if self.deadline is None else max(SHORTEST_TRY, self.deadline - now)

    def failed(self, failure: TransportError, now: float, budget: float | None) -> float:
        """Seconds to wait before the next try; raises the failure to report once time is up."""
        if isinstance(failure, ChannelFull):
            self.full = failure
        elif self.full is not None and budget is not None and budget < self.answer:
            failure = self.full  # a try cut short by our deadline says nothing of the link
        pause, self.pause = self.pause, min(self.pause * 2, LONGEST_PAUSE)
        if self.deadline is None:
            return pause
        if now >= self.deadline:
            raise failure
        return min(pause, self.deadline - now)


async def until_stored(
    clock: Clock, timeout: float | None, attempt: Attempt, *, answer: float = math.inf
) -> None:
    """Run ``attempt`` until it stores, waiting out full channels and lost links."""
    retries = Retries(timeout, clock.time(), answer=answer)
    while True:
        budget = retries.budget(clock.time())
        outcome: bool | TransportError
        try:
            outcome = await attempt(budget)
        except ConnectionLost as exc:
            outcome = exc
        if isinstance(outcome, TransportError):
            await clock.sleep(retries.failed(outcome, clock.time(), budget))
        elif outcome:
            return
