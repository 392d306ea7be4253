"""A member of a consumer group on the embedded broker: it takes deliveries within its
credit (a group's direct requests first, see :mod:`.direct`) and settles them; the
:class:`~seawall._broker.engine.Broker` keeps the group's positions and the channel's
room up to date as it does.
"""

from __future__ import annotations

import asyncio
import itertools
from typing import TYPE_CHECKING

from .._clock import wait_until
from .direct import DIRECT, DirectQueue
from .log import GroupState, Taken

if TYPE_CHECKING:
    from .engine import Broker, _Channel

_members = itertools.count(1)


class Member:
    """One member of a group: takes deliveries within its credit and settles them."""

    def __init__(
        self, broker: Broker, channel: _Channel, name: str, group: GroupState[bytes], prefetch: int
    ) -> None:
        self.broker = broker
        self.channel = channel
        self.name = name
        self.group = group
        self.id = next(_members)
        self.wake = asyncio.Event()
        self.state = "open"  # open | closed | broken | deleted
        self.direct: DirectQueue[bytes] | None = None  # its group's direct requests
        group.join(self.id, prefetch)

    def take(self) -> Taken[bytes] | None:
        """The next delivery within this member's credit, or None: a direct request
        first (see :mod:`.direct`), then the logs."""
        now = self.broker.clock.time()
        direct = self.direct
        if direct is not None and direct.due(now) and self.group.lend(self.id):
            return direct.take(self.id, now)
        return self.group.take(self.id, now)

    async def wait(self) -> None:
        """Sleep until something may be deliverable (woken, or a redelivery falls due)."""
        self.wake.clear()
        clock = self.broker.clock
        due = self.group.next_retry()
        if self.direct is not None and (again := self.direct.next_retry()) is not None:
            due = again if due is None else min(due, again)
        # A redelivery already due waits for credit, which comes with a wake; one
        # due later sets a timer. The caller re-checks after waking, so a timer
        # firing a hair early just loops once more.
        if due is not None and due <= clock.time():
            due = None
        await wait_until(clock, self.wake, due)

    def ack(self, partition: int, offset: int) -> None:
        """Settle a delivery; ignored if this member no longer holds it."""
        group = self.group
        if partition == DIRECT:
            if self.direct is not None and self.direct.ack(self.id, offset):
                group.repay(self.id)
                self.wake.set()
            return
        starved = group.credit(self.id) <= 0
        before = group.committed(partition)
        if group.ack(self.id, partition, offset):
            self.broker._settled(self, partition, before)
            if starved or len(self.channel.logs) > 1:
                self.channel.wake()

    def nack(self, partition: int, offset: int, delay: float) -> None:
        """Deliver again not before ``delay`` seconds from now; ignored if not held."""
        when = self.broker.clock.time() + max(0.0, delay)
        if partition == DIRECT:
            if self.direct is not None and self.direct.nack(self.id, offset, when):
                self.group.repay(self.id)
                self.channel.wake()
            return
        if self.group.nack(self.id, partition, offset, when):
            self.channel.wake()

    def leave(self, why: str = "closed") -> None:
        """Stop taking; unsettled deliveries come again (to any member)."""
        if self.state == "open":
            self.state = why
            self.broker._left(self)
            self.wake.set()
