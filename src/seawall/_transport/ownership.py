"""Who reads which partition of a group: one member's side, as a sans-IO state machine.

Every broker adapter with partitioned channels (NATS, Redis, RabbitMQ) agrees
on partition ownership the same way; only the place where leases live differs
(see :mod:`seawall._transport.membership` for the store each broker supplies
and the asyncio loop that drives this machine). This module does no I/O and
reads no clock: it is fed the time and the answers of the store, and says what
to do next, one :data:`Action` at a time.

The model:

* Each member holds a **membership lease** that it renews every ``every``
  seconds; a member not heard of for ``ttl`` seconds is gone. Who should own
  what follows :func:`~seawall._transport.assignment.wanted` over the live
  members.
* A member reads a partition only while it holds that partition's **lease**,
  taken from the store when free (never while another member holds it) and
  renewed with the membership. Each take hands out a **fencing epoch**, a
  counter the store raises on every take of that partition; a renewal
  answers which leases were lost (ran out, or taken with a newer epoch), and
  a holder whose epoch is stale stops reading at once.
* **Hand-over**: a member that should no longer own a partition stops
  reading it, then waits until it holds none of its entries *and* no read it
  already sent can still bring entries of it (the reader's ``busy``), and
  only then gives the lease up. The next owner, which keeps asking every
  ``retry`` seconds (or sooner, when woken), takes it once it is free.

Each partition this member cares about is in one :class:`Phase`:

=============  ===================================================================
``WANTED``     should be ours; its lease is held by another, or not asked for yet
``TAKING``     the store was asked for the lease
``OWNED``      the lease is ours (epoch ``e``): read it
``RELEASING``  the lease is ours, reading has stopped: give it up once not busy
``FENCED``     the lease was lost while reading: stop reading at once
=============  ===================================================================

:meth:`Ownership.next` returns the next action. The caller carries it out
before asking again (so ``busy`` is only asked once the :class:`Stop` of a
partition is done, and counts every read that stop could not call back); an
action's effect is assumed once asked for, except a take's, whose answer comes
back through :meth:`Ownership.taken`:

* a round starts with :class:`Renew` when the renewal is due, else with
  :class:`Refresh` (who is live); their answers come back through
  :meth:`Ownership.renewed` and :meth:`Ownership.heard`;
* then hand-over steps first (:class:`Stop`, :class:`GiveUp`), then taking
  and reading (:class:`Take`, :class:`Read`), each wanted partition asked
  for at most once a round;
* a round ends with :class:`Wait`: nothing to do before ``until`` unless
  something changes (a member comes or goes, a lease is let go, a held entry
  is settled), when the caller may ask again at once.

Safety rests on one timing assumption, as with any lease: a live member
renews before its leases run out (``every`` plus a store round trip stays
under ``ttl``). The fencing epoch is how a member that missed it learns so.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from .._exceptions import ConfigurationError
from .assignment import wanted

__all__ = [
    "Action",
    "Claim",
    "Fence",
    "GiveUp",
    "Ownership",
    "Phase",
    "Read",
    "Refresh",
    "Renew",
    "Stop",
    "Take",
    "Wait",
]


class Phase(enum.Enum):
    """Where one partition stands for this member (see the module docstring)."""

    WANTED = "wanted"
    TAKING = "taking"
    OWNED = "owned"
    RELEASING = "releasing"
    FENCED = "fenced"


@dataclass(frozen=True, slots=True)
class Fence:
    """The ownership a write depends on: a partition of a group (``scope``) and the
    fencing epoch of the lease it was read under.

    A store that keeps the highest epoch it saw per scope refuses a write whose epoch
    is lower (:class:`~seawall.StaleEpoch`): a member that lost the lease while it
    was paused cannot write over its successor's work.
    """

    scope: str
    epoch: int


@dataclass(frozen=True, slots=True)
class Renew:
    """Renew the membership and the held leases (partition -> epoch); report lost ones."""

    held: Mapping[int, int]


@dataclass(frozen=True, slots=True)
class Refresh:
    """Learn who is live, without renewing."""


@dataclass(frozen=True, slots=True)
class Take:
    """Ask the store for the partition's lease; report the epoch, or None if held."""

    partition: int


@dataclass(frozen=True, slots=True)
class Read:
    """Start reading the partition, under the lease of ``epoch``."""

    partition: int
    epoch: int


@dataclass(frozen=True, slots=True)
class Stop:
    """Send no more reads of the partition (reads already sent may still bring entries)."""

    partition: int


@dataclass(frozen=True, slots=True)
class GiveUp:
    """Let the partition's lease (of ``epoch``) go: no read of it is pending any more."""

    partition: int
    epoch: int


@dataclass(frozen=True, slots=True)
class Wait:
    """Nothing to do before ``until`` (epoch seconds), unless woken."""

    until: float


Action = Renew | Refresh | Take | Read | Stop | GiveUp | Wait
"""What :meth:`Ownership.next` may ask for."""


@dataclass(slots=True)
class Claim:
    """This member's stake in one partition."""

    phase: Phase
    epoch: int = 0
    """The fencing epoch of the lease held (``OWNED``, ``RELEASING``) or lost (``FENCED``)."""
    reading: bool = False
    """Whether :class:`Read` was asked for and not yet followed by :class:`Stop`."""


class Ownership:
    """One member's partitions of one group, fed time and store answers (sans-IO)."""

    def __init__(
        self,
        me: str,
        partitions: int,
        *,
        ttl: float,
        every: float | None = None,
        retry: float | None = None,
    ) -> None:
        if ttl <= 0 or partitions < 1:
            raise ConfigurationError(
                f"partition ownership needs a lease longer than 0 s and a partition at "
                f"least, got ttl={ttl}, partitions={partitions}"
            )
        self.me = me
        self.partitions = partitions
        self.ttl = ttl
        self.every = ttl / 3 if every is None else min(every, ttl / 3)
        """Seconds between renewals: at most a third of the lease."""
        self.retry = self.every if retry is None else retry
        """Seconds between tries at a wanted partition whose lease is held."""
        self.claims: dict[int, Claim] = {}
        self.epochs: dict[int, int] = {}
        """The epoch of the last lease taken of each partition, held or not (for fences)."""
        self._members = frozenset({me})
        self._renew_at = -math.inf
        self._fresh = False  # whether this round has learnt who is live
        self._tried: set[int] = set()  # partitions asked for this round and found held

    # -- what the caller reads ---------------------------------------------------
    def phase(self, partition: int) -> Phase | None:
        """Where ``partition`` stands, or None if this member has no stake in it."""
        claim = self.claims.get(partition)
        return None if claim is None else claim.phase

    def held(self) -> dict[int, int]:
        """The leases held: partition -> fencing epoch."""
        return {p: c.epoch for p, c in self.claims.items() if c.phase in _HOLDING}

    def fence(self, partition: int, scope: str) -> Fence | None:
        """The fence of ``partition``: the epoch of the last lease of it this member
        took, held or lost since (a write under a lost one is refused), or None when
        it never held one."""
        epoch = self.epochs.get(partition)
        return None if epoch is None else Fence(f"{scope}/{partition}", epoch)

    def mine(self) -> frozenset[int]:
        """The partitions this member should own, by the members last heard."""
        return wanted(self.me, self._members, self.partitions)

    # -- answers from the store --------------------------------------------------
    def renewed(self, at: float, members: Iterable[str], lost: Iterable[int]) -> None:
        """A renewal sent at ``at`` went through: who is live, and the leases lost."""
        self._renew_at = at + self.every
        self.heard(members)
        for partition in lost:
            self._lose(partition)

    def heard(self, members: Iterable[str]) -> None:
        """The live members, as the store knows them now."""
        self._members = frozenset(members) | {self.me}

    def taken(self, partition: int, epoch: int | None) -> None:
        """The answer to :class:`Take`: the lease's epoch, or None when it is held."""
        claim = self.claims.get(partition)
        assert claim is not None, f"partition {partition} was not being taken"
        assert claim.phase is Phase.TAKING, f"partition {partition} was not being taken"
        if epoch is None:
            claim.phase = Phase.WANTED
            self._tried.add(partition)
        else:
            claim.phase, claim.epoch = Phase.OWNED, epoch
            self.epochs[partition] = epoch

    def left(self) -> None:
        """Every lease was given up (the member leaves): no stake in anything."""
        self.claims.clear()

    def _lose(self, partition: int) -> None:
        claim = self.claims.get(partition)
        if claim is None or claim.phase not in _HOLDING:
            return
        if claim.reading:
            claim.phase = Phase.FENCED
        else:
            del self.claims[partition]

    # -- what to do next -----------------------------------------------------------
    def next(self, now: float, busy: Callable[[int], bool]) -> Action:
        """The next action, at ``now``; ``busy(p)`` says whether entries of ``p`` are
        still held or may still come from a read already sent."""
        if now >= self._renew_at:
            self._fresh = True
            return Renew(self.held())
        if not self._fresh:
            self._fresh = True
            return Refresh()
        mine = self.mine()
        return self._let_go(mine, busy) or self._take(mine) or self._wait(now)

    def _let_go(self, mine: frozenset[int], busy: Callable[[int], bool]) -> Action | None:
        for partition, claim in sorted(self.claims.items()):
            if action := _letting_go(partition, claim, partition in mine, busy):
                if claim.phase is Phase.FENCED or isinstance(action, GiveUp):
                    del self.claims[partition]
                return action
        return None

    def _take(self, mine: frozenset[int]) -> Action | None:
        for partition in sorted(mine - self.claims.keys()):
            self.claims[partition] = Claim(Phase.WANTED)
        for partition, claim in sorted(self.claims.items()):
            if action := _taking(partition, claim, partition in mine, self._tried):
                return action
            if claim.phase is Phase.WANTED and partition not in mine:
                del self.claims[partition]
        return None

    def _wait(self, now: float) -> Wait:
        self._fresh = False
        self._tried.clear()
        until = self._renew_at
        if any(c.phase is Phase.WANTED for c in self.claims.values()):
            until = min(until, now + self.retry)
        return Wait(until)


_HOLDING = (Phase.OWNED, Phase.RELEASING)


def _letting_go(
    partition: int, claim: Claim, mine: bool, busy: Callable[[int], bool]
) -> Action | None:
    """The hand-over step ``claim`` needs, if any (the claim is moved on)."""
    if claim.phase is Phase.FENCED:
        return Stop(partition)
    if claim.phase is Phase.OWNED and not mine:
        claim.phase, claim.reading = Phase.RELEASING, False
        return Stop(partition)
    if claim.phase is Phase.RELEASING and not mine and not busy(partition):
        return GiveUp(partition, claim.epoch)
    return None


def _taking(partition: int, claim: Claim, mine: bool, tried: set[int]) -> Action | None:
    """The taking or reading step ``claim`` needs, if any (the claim is moved on)."""
    if claim.phase is Phase.WANTED and mine and partition not in tried:
        claim.phase = Phase.TAKING
        return Take(partition)
    if claim.phase is Phase.RELEASING and mine:  # wanted again before it was let go
        claim.phase = Phase.OWNED
    if claim.phase is Phase.OWNED and not claim.reading:
        claim.reading = True
        return Read(partition, claim.epoch)
    return None
