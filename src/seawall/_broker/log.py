"""Sans-IO channel state: partitioned logs, consumer groups, credit and redelivery.

This is the broker logic shared by the memory transport and the embedded
broker: plain objects fed ``now`` and returning what to deliver, with no
asyncio and no clock of their own. :class:`GroupState` is shared;
:class:`ChannelState` and :class:`PartitionLog` are the memory transport's
log model (the embedded broker keeps its logs as ``pages.PagedLog``).

Per group and partition it keeps a delivery cursor (``next``), the committed
position (every offset below it is settled), the in-flight offsets with the
member holding each, the settled offsets past the commit point, and a heap of
offsets waiting for redelivery with their not-before times. Only a contiguous
run of settled offsets is committed, and the log is trimmed below the lowest
committed position of all groups, so a slow group keeps what it has not seen.

Partition ownership: with one partition every member of a group takes from
it; with several, partition ``p`` goes to the ``p mod n``-th member in join
order. A partition changes hands only once its previous owner has nothing of
it in flight, so per-key order survives rebalancing.

Priority levels: a channel with ``levels`` > 1 (one partition) keeps a log per
level, lowest first, which every member reads highest level first.

Replay: a :class:`PartitionLog` keeps each entry's store time beside it, so a
new group may start at a position (:class:`~seawall._transport.FromOffsets`,
one offset per log) or at a time (:class:`~seawall._transport.FromTime`, the
first entry stored at or after it). Either reaches only what is still kept:
entries every group has settled are trimmed, and a start below the oldest
kept entry starts there; one past the end starts at the next entry published.
"""

from __future__ import annotations

import bisect
import heapq
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Generic, NamedTuple, Protocol, TypeVar

from .._exceptions import ConfigurationError
from .._transport import FromOffsets, Start, StartAt

__all__ = ["ChannelState", "GroupState", "LogView", "Taken"]

T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)


class LogView(Protocol[T_co]):
    """What a group reads of a partition: offsets ``base`` to ``end`` and their entries."""

    @property
    def base(self) -> int: ...

    @property
    def end(self) -> int: ...

    def get(self, offset: int) -> T_co: ...


class PartitionLog(Generic[T]):
    """An append-only sequence of entries with absolute offsets and store times;
    trimmed at the front. ``times[i]`` is when ``entries[i]`` was appended."""

    __slots__ = ("base", "entries", "times")

    def __init__(self) -> None:
        self.base = 0
        self.entries: deque[T] = deque()
        self.times: deque[float] = deque()

    @property
    def end(self) -> int:
        """Offset the next append gets."""
        return self.base + len(self.entries)

    def append(self, entry: T, now: float) -> int:
        self.entries.append(entry)
        self.times.append(now)
        return self.end - 1

    def offset_at(self, time: float) -> int:
        """The offset of the first entry stored at or after ``time`` (``end`` if none)."""
        return self.base + bisect.bisect_left(self.times, time)

    def get(self, offset: int) -> T:
        return self.entries[offset - self.base]

    def trim(self, below: int) -> int:
        """Drop entries with offsets below ``below``; returns how many went."""
        dropped = max(0, min(below - self.base, len(self.entries)))
        popleft, popleft_time = self.entries.popleft, self.times.popleft
        for _ in range(dropped):
            popleft()
            popleft_time()
        self.base += dropped
        return dropped


@dataclass(slots=True)
class _GroupPartition:
    next: int
    committed: int
    inflight: dict[int, int] = field(default_factory=dict)  # offset -> member
    settled: set[int] = field(default_factory=set)
    retry: list[tuple[float, int]] = field(default_factory=list)  # (not_before, offset)
    attempts: dict[int, int] = field(default_factory=dict)
    owner: int | None = None

    def settle(self, offset: int) -> None:
        self.inflight.pop(offset, None)
        self.attempts.pop(offset, None)
        if offset < self.committed:  # retention skipped past it meanwhile
            return
        if offset == self.committed:
            self.committed += 1
            while self.committed in self.settled:
                self.settled.discard(self.committed)
                self.committed += 1
        else:
            self.settled.add(offset)


class Taken(NamedTuple, Generic[T]):
    """One delivery decided by :meth:`GroupState.take` (a tuple: one is made per delivery)."""

    partition: int
    offset: int
    attempt: int
    entry: T


class GroupState(Generic[T]):
    """One consumer group's view of a channel."""

    def __init__(
        self,
        logs: Sequence[LogView[T]],
        start: StartAt,
        positions: Sequence[int] | None = None,
        *,
        levels: int = 1,
    ) -> None:
        """A group reading ``logs`` from ``start``, or from committed ``positions``.

        ``levels > 1`` makes the logs the priority levels of one partition, lowest
        first: every member takes from them, the highest level with something due
        first.
        """
        self.logs = logs
        self.shared = len(logs) == levels  # one partition: members do not own logs
        if positions is not None:
            at = [
                max(log.base, min(pos, log.end)) for log, pos in zip(logs, positions, strict=True)
            ]
        else:
            at = [log.end if start == "latest" else log.base for log in logs]
        self.parts = [_GroupPartition(next=pos, committed=pos) for pos in at]
        self.members: dict[int, int] = {}  # member -> credit (prefetch - in flight)
        self._order: list[int] = []
        self._cursor = 0

    # -- membership -------------------------------------------------------
    def join(self, member: int, prefetch: int) -> None:
        self.members[member] = prefetch
        self._order.append(member)
        self._assign()

    def leave(self, member: int, now: float) -> None:
        """Remove a member; its in-flight deliveries come again at once."""
        self.members.pop(member, None)
        if member in self._order:
            self._order.remove(member)
        for part in self.parts:
            for offset in [o for o, m in part.inflight.items() if m == member]:
                del part.inflight[offset]
                part.attempts.setdefault(offset, 1)  # a first attempt is not written down
                heapq.heappush(part.retry, (now, offset))
        self._assign()

    def _wanted(self, p: int) -> int | None:
        n = len(self._order)
        return self._order[p % n] if n else None

    def _assign(self) -> None:
        if self.shared:
            return
        for p, part in enumerate(self.parts):
            wanted = self._wanted(p)
            if part.owner != wanted and not part.inflight:
                part.owner = wanted

    def _owns(self, member: int, p: int) -> bool:
        # An owner handing a partition over takes no more of it, so it drains.
        if self.shared:
            return True
        return self.parts[p].owner == member and self._wanted(p) == member

    # -- delivery ---------------------------------------------------------
    def take(self, member: int, now: float) -> Taken[T] | None:
        """The next delivery for ``member``, or None if it has no credit or nothing is due."""
        credit = self.members.get(member, 0)
        if credit <= 0:
            return None
        if len(self.parts) == 1:
            taken = self._take_from(0, member, now)
        elif self.shared:
            taken = self._take_by_level(member, now)
        else:
            taken = self._take_owned(member, now)
        if taken is not None:
            self.members[member] = credit - 1
        return taken

    def _take_by_level(self, member: int, now: float) -> Taken[T] | None:
        """Take from the highest priority level that has something due."""
        for level in range(len(self.parts) - 1, -1, -1):
            taken = self._take_from(level, member, now)
            if taken is not None:
                return taken
        return None

    def _take_owned(self, member: int, now: float) -> Taken[T] | None:
        """Take from the partitions ``member`` owns, round robin."""
        count = len(self.parts)
        for i in range(count):
            p = (self._cursor + i) % count
            if not self._owns(member, p):
                continue
            taken = self._take_from(p, member, now)
            if taken is not None:
                self._cursor = (p + 1) % count
                return taken
        return None

    def _take_from(self, p: int, member: int, now: float) -> Taken[T] | None:
        part = self.parts[p]
        log = self.logs[p]
        while part.retry and part.retry[0][0] <= now:
            _, offset = heapq.heappop(part.retry)
            if offset in part.inflight or offset < part.committed or offset in part.settled:
                continue  # settled meanwhile (a late ack of a returned delivery)
            return self._hand_out(part, p, offset, member, log.get(offset))
        if part.next < log.end:
            offset = part.next
            part.next += 1
            return self._hand_out(part, p, offset, member, log.get(offset))
        return None

    def _hand_out(
        self, part: _GroupPartition, p: int, offset: int, member: int, entry: T
    ) -> Taken[T]:
        attempt = part.attempts.get(offset, 0) + 1
        part.attempts[offset] = attempt
        part.inflight[offset] = member
        return Taken(p, offset, attempt, entry)

    def holds(self, member: int, partition: int, offset: int) -> bool:
        """Whether ``member`` still holds this delivery (it may have been returned)."""
        return self.parts[partition].inflight.get(offset) == member

    def ack(self, member: int, partition: int, offset: int) -> bool:
        """Settle a delivery for good; False if the member no longer held it.

        Every delivery ends here, so :meth:`_GroupPartition.settle` and :meth:`_credit`
        are written out inline for the common case: the oldest offset in flight settled.
        """
        part = self.parts[partition]
        inflight = part.inflight
        if inflight.get(offset) != member:
            return False
        del inflight[offset]
        if part.attempts:
            part.attempts.pop(offset, None)
        if offset == part.committed and not part.settled:
            part.committed = offset + 1
        elif offset >= part.committed:
            part.settle(offset)
        members = self.members
        if member in members:
            members[member] += 1
        if not self.shared:
            self._assign()
        return True

    def nack(self, member: int, partition: int, offset: int, not_before: float) -> bool:
        """Return a delivery for redelivery at ``not_before``; False if not held."""
        part = self.parts[partition]
        if part.inflight.get(offset) != member:
            return False
        del part.inflight[offset]
        part.attempts.setdefault(offset, 1)  # a first attempt is not written down
        heapq.heappush(part.retry, (not_before, offset))
        self._credit(member)
        return True

    def credit(self, member: int) -> int:
        """Deliveries ``member`` may still take before it settles one (0 if it left)."""
        return self.members.get(member, 0)

    def _credit(self, member: int) -> None:
        if member in self.members:
            self.members[member] += 1
        self._assign()

    def next_retry(self) -> float | None:
        """Earliest not-before time among waiting redeliveries."""
        times = [part.retry[0][0] for part in self.parts if part.retry]
        return min(times) if times else None

    def committed(self, partition: int) -> int:
        return self.parts[partition].committed

    def skip_to(self, partition: int, offset: int) -> None:
        """Forget everything below ``offset`` (retention dropped it): it is settled unread."""
        part = self.parts[partition]
        if offset <= part.committed:
            return
        part.committed = max(part.committed, offset)
        part.next = max(part.next, offset)
        part.settled = {o for o in part.settled if o >= offset}
        part.attempts = {o: n for o, n in part.attempts.items() if o >= offset}
        while part.committed in part.settled:
            part.settled.discard(part.committed)
            part.committed += 1

    def backlog(self) -> int:
        """Messages not yet settled by this group."""
        return sum(
            log.end - part.committed for log, part in zip(self.logs, self.parts, strict=True)
        )

    def take_many(self, member: int, now: float, limit: int) -> list[Taken[T]]:
        """Up to ``limit`` deliveries for ``member`` at once: :meth:`take` in bulk.

        On a single partition with no redelivery due, the run of fresh offsets
        (never delivered, so attempt 1) is handed out in one go; anything else
        goes through :meth:`take` one by one. Added for the memory transport's
        delivery loop, which otherwise pays a few calls per message here.
        """
        credit = min(limit, self.members.get(member, 0))
        if credit <= 0:
            return []
        part = self.parts[0]
        if len(self.parts) > 1 or (part.retry and part.retry[0][0] <= now):
            taken: list[Taken[T]] = []
            while len(taken) < credit and (one := self.take(member, now)) is not None:
                taken.append(one)
            return taken
        log = self.logs[0]
        start = part.next
        stop = min(log.end, start + credit)
        if stop <= start:
            return []
        part.next = stop
        self.members[member] -= stop - start
        # A first attempt is not written to ``attempts``: an offset absent there has had
        # none before (see _hand_out), and its ack then has nothing to remove.
        inflight, get = part.inflight, log.get
        new = tuple.__new__  # Taken(...) without the Python-level __new__ of a NamedTuple
        taken = []
        for offset in range(start, stop):
            inflight[offset] = member
            taken.append(new(Taken, (0, offset, 1, get(offset))))
        return taken

    def untake(self, member: int, partition: int, offset: int, now: float) -> bool:
        """Give back a delivery taken (e.g. by :meth:`take_many`) but never handed on.

        Unlike :meth:`nack`, the attempt does not count: it comes again at once
        with the attempt number it would have had. False if ``member`` does not hold it.
        """
        part = self.parts[partition]
        if part.inflight.get(offset) != member:
            return False
        del part.inflight[offset]
        attempt = part.attempts.pop(offset, 1) - 1
        if attempt:
            part.attempts[offset] = attempt
        heapq.heappush(part.retry, (now, offset))
        self._credit(member)
        return True

    def lend(self, member: int) -> bool:
        """Spend one of ``member``'s credit on a delivery from outside the logs (a direct
        request, :mod:`seawall._broker.direct`); False if it has none."""
        credit = self.members.get(member, 0)
        if credit <= 0:
            return False
        self.members[member] = credit - 1
        return True

    def repay(self, member: int) -> None:
        """Give back the credit :meth:`lend` spent, once that delivery is settled."""
        if member in self.members:
            self.members[member] += 1


class ChannelState(Generic[T]):
    """A channel's logs (one per partition, or per priority level) and the groups reading it."""

    def __init__(self, partitions: int, levels: int = 1) -> None:
        self.levels = levels
        self.logs: list[PartitionLog[T]] = [PartitionLog() for _ in range(partitions * levels)]
        self.groups: dict[str, GroupState[T]] = {}

    def group(self, name: str, start: Start) -> GroupState[T]:
        """The named group, created at ``start`` if new (see the module docstring)."""
        group = self.groups.get(name)
        if group is None:
            group = self.groups[name] = self._new_group(start)
        return group

    def _new_group(self, start: Start) -> GroupState[T]:
        if isinstance(start, str):
            return GroupState(self.logs, start, levels=self.levels)
        if isinstance(start, FromOffsets):
            if len(start.offsets) != len(self.logs):
                raise ConfigurationError(
                    f"the channel has {len(self.logs)} logs (partitions x priority levels) "
                    f"but the start position names {len(start.offsets)} offsets; give one per log"
                )
            at = list(start.offsets)
        else:
            at = [log.offset_at(start.time) for log in self.logs]
        return GroupState(self.logs, "earliest", at, levels=self.levels)

    def append(self, partition: int, entry: T, now: float) -> int:
        return self.logs[partition].append(entry, now)

    def retained(self) -> int:
        """Entries held, over all partitions."""
        if len(self.logs) == 1:  # asked on every publish
            return len(self.logs[0].entries)
        return sum(len(log.entries) for log in self.logs)

    def trim(self) -> int:
        """Drop entries every group has settled; with no group, keep everything."""
        if not self.groups:
            return 0
        dropped = 0
        for p, log in enumerate(self.logs):
            dropped += log.trim(min(g.committed(p) for g in self.groups.values()))
        return dropped
