"""Partition ownership (sans-IO machine and its driver) over an in-memory lease store.

Two parts. A table of scenarios pins :class:`Ownership`'s decisions one
action at a time. Then a hypothesis state machine runs several members, each
a real :class:`Member` driven step by step (its coroutines never suspend on
the in-memory store, so they run without an event loop), against one shared
store on a virtual clock, with reads that stay in flight and arrive late.

Invariants, after every rule:

* **exclusive**: no partition is engaged by two live members at once; a
  member is engaged with a partition while it reads it, has a read in flight
  that asked for it, or holds an entry of it not yet settled;
* **fenced**: the epochs handed out per partition strictly increase, a
  member starts reading only under the partition's current lease (its own,
  current epoch), and every lease a member believes it holds is the store's.

Liveness, checked by the ``converge`` rule and at teardown: from any state,
with no more joins, leaves or crashes and a fair schedule (a member runs when
its wait ends or it is woken; a read arrives within ``READ`` seconds; a held
entry is settled within ``SETTLE``), every partition is read by the member
:func:`owners` names, and by no one else, within

    BOUND = EVERY + READ + SETTLE + RETRY   (1.6 s here)

of the moment the last lease of a crashed member runs out (at most ``TTL``
after its crash), or of now if none is running: every member's next round
(within ``EVERY``) sees the true members; an owner stops reading what is no
longer its own in that round, and gives it up once its last read arrived and
its last entry is settled; the next owner asks again within ``RETRY``. So a
partition is read again at most ``TTL + BOUND`` (4.6 s) after its owner
crashed, and ``BOUND`` after a member joined or left.

Time is advanced freely except past a live member's lease: safety rests on
live members renewing in time (see :mod:`seawall._transport.ownership`).
Hypothesis runs 1,000 examples of up to 20 rules each, in about 5 s.
"""

from __future__ import annotations

import asyncio
import gc
import math
from collections import Counter
from collections.abc import Coroutine, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from seawall import VirtualClock
from seawall._exceptions import ConnectionLost, StaleEpoch
from seawall._transport.assignment import owners
from seawall._transport.membership import Heartbeat, Member
from seawall._transport.ownership import (
    GiveUp,
    Ownership,
    Phase,
    Read,
    Refresh,
    Renew,
    Stop,
    Take,
    Wait,
)
from seawall.es import NewEvent, SQLiteEventStore

T = TypeVar("T")

TTL, EVERY, RETRY, READ, SETTLE = 3.0, 1.0, 0.1, 0.25, 0.25
BOUND = EVERY + READ + SETTLE + RETRY
PARTITIONS = 4
MOST_MEMBERS = 4
WHO = st.integers(0, MOST_MEMBERS - 1)


# -- the machine, one decision at a time ------------------------------------------
def _play(script: list[Any], *, partitions: int = 2) -> None:
    """Feed ``script`` to a machine of member ``b``: an :data:`Action` is the next
    decision expected; tuples are answers and settings."""
    machine = Ownership("b", partitions, ttl=3.0, retry=0.1)
    now, busy = 0.0, set[int]()
    for number, item in enumerate(script):
        match item:
            case ("at", float(t)):
                now = t
            case ("busy", set(partitions_busy)):
                busy = partitions_busy
            case ("renewed", members, lost):
                machine.renewed(now, members, lost)
            case ("heard", members):
                machine.heard(members)
            case ("taken", int(p), epoch):
                machine.taken(p, epoch)
            case ("phase", int(p), phase):
                assert machine.phase(p) is phase, f"step {number}: partition {p}"
            case _:
                got = machine.next(now, busy.__contains__)
                assert got == item, f"step {number}: expected {item}, got {got}"


SCENARIOS: dict[str, list[Any]] = {
    "alone: renews, then takes and reads every partition, then waits for the renewal": [
        Renew({}),
        ("renewed", {"b"}, ()),
        Take(0),
        ("taken", 0, 7),
        Read(0, 7),
        Take(1),
        ("taken", 1, 3),
        Read(1, 3),
        Wait(1.0),
        Refresh(),  # woken early: a round without renewal starts by asking who is live
        ("heard", {"b"}),
        Wait(1.0),
        ("at", 1.0),
        Renew({0: 7, 1: 3}),
    ],
    "a partition held elsewhere is asked for once a round, again after `retry`": [
        Renew({}),
        ("renewed", {"a", "b"}, ()),
        Take(1),
        ("taken", 1, None),
        ("phase", 1, Phase.WANTED),
        Wait(0.1),
        ("at", 0.1),
        Refresh(),
        ("heard", {"a", "b"}),
        Take(1),
        ("taken", 1, 4),
        Read(1, 4),
        Wait(1.0),
    ],
    "no longer wanted: stop reading, give the lease up only once no longer busy": [
        Renew({}),
        ("renewed", {"b"}, ()),
        Take(0),
        ("taken", 0, 1),
        Read(0, 1),
        Take(1),
        ("taken", 1, 1),
        Read(1, 1),
        Wait(1.0),
        ("busy", {0}),
        Refresh(),
        ("heard", {"a", "b"}),  # a joined: partition 0 is a's now
        Stop(0),
        ("phase", 0, Phase.RELEASING),
        Wait(1.0),  # a read sent before the stop may still bring entries of 0
        Refresh(),
        ("heard", {"a", "b"}),
        Wait(1.0),
        ("busy", set()),
        Refresh(),
        ("heard", {"a", "b"}),
        GiveUp(0, 1),
        ("phase", 0, None),
        Wait(1.0),
        ("at", 1.0),
        Renew({1: 1}),
    ],
    "wanted again while releasing: read again under the same lease": [
        Renew({}),
        ("renewed", {"b"}, ()),
        Take(0),
        ("taken", 0, 5),
        Read(0, 5),
        Take(1),
        ("taken", 1, 5),
        Read(1, 5),
        Wait(1.0),
        ("busy", {0}),
        Refresh(),
        ("heard", {"a", "b"}),
        Stop(0),
        Wait(1.0),
        Refresh(),
        ("heard", {"b"}),  # a left again before the hand-over finished
        Read(0, 5),
        ("phase", 0, Phase.OWNED),
        Wait(1.0),
    ],
    "a lease lost while reading is fenced: stop at once, then ask for it again": [
        Renew({}),
        ("renewed", {"b"}, ()),
        Take(0),
        ("taken", 0, 2),
        Read(0, 2),
        Take(1),
        ("taken", 1, 2),
        Read(1, 2),
        Wait(1.0),
        ("at", 1.0),
        Renew({0: 2, 1: 2}),
        ("renewed", {"b"}, {1}),  # partition 1's epoch 2 is stale
        ("phase", 1, Phase.FENCED),
        Stop(1),
        Take(1),
        ("taken", 1, None),
        Wait(1.1),
        ("at", 1.1),
        Refresh(),
        ("heard", {"b"}),
        Take(1),
        ("taken", 1, 4),
        Read(1, 4),
    ],
    "a lease lost while releasing is just forgotten": [
        Renew({}),
        ("renewed", {"b"}, ()),
        Take(0),
        ("taken", 0, 1),
        Read(0, 1),
        Take(1),
        ("taken", 1, 1),
        Read(1, 1),
        Wait(1.0),
        ("busy", {0}),
        Refresh(),
        ("heard", {"a", "b"}),
        Stop(0),
        Wait(1.0),
        ("at", 1.0),
        Renew({0: 1, 1: 1}),
        ("renewed", {"a", "b"}, {0}),
        ("phase", 0, None),
        Wait(2.0),
    ],
}


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_ownership_decides(name: str) -> None:
    _play(SCENARIOS[name])


def test_renewals_come_at_least_every_third_of_the_lease() -> None:
    assert Ownership("a", 1, ttl=3.0).every == 1.0
    assert Ownership("a", 1, ttl=3.0, every=0.1).every == 0.1
    assert Ownership("a", 1, ttl=3.0, every=5.0).every == 1.0


# -- the protocol, many members, any interleaving -------------------------------------
class Board:
    """The shared in-memory lease store, and the clock."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.members: dict[str, float] = {}  # member -> lease end
        self.locks: dict[int, tuple[str, int, float]] = {}  # partition -> holder, epoch, end
        self.epochs: dict[int, list[int]] = {p: [] for p in range(PARTITIONS)}
        self.broken: list[str] = []

    def live(self) -> frozenset[str]:
        return frozenset(m for m, end in self.members.items() if end > self.now)

    def holder(self, partition: int) -> tuple[str, int] | None:
        lock = self.locks.get(partition)
        return None if lock is None or lock[2] <= self.now else lock[:2]

    def time(self) -> float:
        return self.now


@dataclass
class Leases:
    """One member's view of the :class:`Board`, as a lease store."""

    board: Board
    me: str

    async def renew(self, held: Mapping[int, int]) -> Heartbeat:
        board = self.board
        board.members[self.me] = board.now + TTL
        lost = {p for p, epoch in held.items() if board.holder(p) != (self.me, epoch)}
        for p in set(held) - lost:
            board.locks[p] = (self.me, held[p], board.now + TTL)
        return Heartbeat(board.live(), frozenset(lost))

    async def members(self) -> frozenset[str]:
        return self.board.live()

    async def acquire(self, partition: int) -> int | None:
        board = self.board
        if board.holder(partition) is not None:
            return None
        epochs = board.epochs[partition]
        epochs.append(max(epochs, default=0) + 1)
        board.locks[partition] = (self.me, epochs[-1], board.now + TTL)
        return epochs[-1]

    async def release(self, partition: int, epoch: int) -> None:
        if self.board.holder(partition) == (self.me, epoch):
            del self.board.locks[partition]

    async def leave(self, held: Mapping[int, int]) -> None:
        for partition, epoch in held.items():
            await self.release(partition, epoch)
        self.board.members.pop(self.me, None)

    async def changed(self) -> bool:
        raise AssertionError("the test wakes members itself")


@dataclass
class Reads:
    """One member's reader: partitions read, reads in flight, entries held."""

    board: Board
    me: str
    reading: set[int] = field(default_factory=set)
    in_flight: list[tuple[frozenset[int], float]] = field(default_factory=list)  # asked, due
    held: list[tuple[int, float]] = field(default_factory=list)  # partition, settle due
    woken: bool = False

    async def start_reading(self, partition: int, epoch: int) -> None:
        if self.board.holder(partition) != (self.me, epoch):
            self.board.broken.append(f"{self.me} reads {partition} under stale epoch {epoch}")
        self.reading.add(partition)

    async def stop_reading(self, partition: int) -> None:
        self.reading.discard(partition)

    def busy(self, partition: int) -> bool:
        return any(p == partition for p, _ in self.held) or any(
            partition in asked for asked, _ in self.in_flight
        )

    def engaged(self) -> set[int]:
        asked = {p for read, _ in self.in_flight for p in read}
        return self.reading | asked | {p for p, _ in self.held}

    def send(self, due: float) -> None:
        if self.reading:
            self.in_flight.append((frozenset(self.reading), due))

    def arrive(self, index: int, mask: int, settle_by: float) -> None:
        """Read ``index`` comes back with an entry of each asked partition in ``mask``."""
        asked, _ = self.in_flight.pop(index)
        self.held += [(p, settle_by) for p in sorted(asked) if mask >> p & 1]
        self.woken |= not asked <= self.reading  # a partition handed over may be free

    def settle(self, index: int) -> None:
        partition, _ = self.held.pop(index)
        self.woken |= partition not in self.reading


class Peer:
    """A member: the real driver, its store view and reader."""

    def __init__(self, board: Board, me: str) -> None:
        self.me = me
        self.reads = Reads(board, me)
        ownership = Ownership(me, PARTITIONS, ttl=TTL, every=EVERY, retry=RETRY)
        self.member = Member(ownership, Leases(board, me), self.reads, board)
        self.wake_at = -math.inf  # when its current wait ends; -inf: mid-round

    def step(self) -> None:
        wait = _done(self.member.step())
        self.wake_at = -math.inf if wait is None else wait.until

    def round(self) -> None:
        """Run as the driver does when its wait ends or it is woken: until the next wait."""
        self.reads.woken = False
        self.step()
        while self.wake_at == -math.inf:
            self.step()

    def due(self, now: float) -> bool:
        return self.reads.woken or self.wake_at <= now


def _done(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine that never suspends (the in-memory store never waits)."""
    try:
        coroutine.send(None)
    except StopIteration as finished:
        return finished.value  # type: ignore[no-any-return]
    coroutine.close()
    raise AssertionError("a coroutine of the in-memory store suspended")


class OwnershipProtocol(RuleBasedStateMachine):
    """Members joining, leaving, crashing and taking turns in any order."""

    def __init__(self) -> None:
        super().__init__()
        self.board = Board()
        self.live: dict[str, Peer] = {}
        self.joined = 0

    def _peer(self, who: int) -> Peer:
        return list(self.live.values())[who % len(self.live)]

    # -- membership ----------------------------------------------------------------
    @precondition(lambda self: len(self.live) < MOST_MEMBERS)
    @rule()
    def join(self) -> None:
        self.joined += 1
        peer = Peer(self.board, f"m{self.joined:03d}")  # ids grow, as UUIDv7s do
        peer.round()  # as Member.join does, before subscribe returns
        self._membership_changed()
        self.live[peer.me] = peer

    @precondition(lambda self: self.live)
    @rule(who=WHO)
    def leave(self, who: int) -> None:
        peer = self.live.pop(self._peer(who).me)
        peer.reads.reading.clear()  # closing gives every held entry back, unhandled
        peer.reads.held.clear()
        _done(peer.member.leave())
        self._membership_changed()

    @precondition(lambda self: self.live)
    @rule(who=WHO)
    def crash(self, who: int) -> None:
        del self.live[self._peer(who).me]  # nothing more from it: no renewal, read or handler

    def _membership_changed(self) -> None:
        for peer in self.live.values():  # stores that watch members wake everyone
            peer.reads.woken = True

    # -- time and turns ------------------------------------------------------------
    @rule(seconds=st.floats(0.001, 2.0))
    def advance(self, seconds: float) -> None:
        lease_ends = [self.board.members[me] for me in self.live]
        limit = min(lease_ends, default=math.inf) - 0.001  # live members renew in time
        self.board.now = max(self.board.now, min(self.board.now + seconds, limit))

    @precondition(lambda self: self.live)
    @rule(who=WHO)
    def step(self, who: int) -> None:
        self._peer(who).step()

    @precondition(lambda self: self.live)
    @rule(who=WHO)
    def send_read(self, who: int) -> None:
        self._peer(who).reads.send(self.board.now + READ)

    @precondition(lambda self: self.live)
    @rule(who=WHO, index=st.integers(0, 7), mask=st.integers(0, 2**PARTITIONS - 1))
    def arrive(self, who: int, index: int, mask: int) -> None:
        reads = self._peer(who).reads
        if reads.in_flight:
            reads.arrive(index % len(reads.in_flight), mask, self.board.now + SETTLE)

    @precondition(lambda self: self.live)
    @rule(who=WHO, index=st.integers(0, 7))
    def settle(self, who: int, index: int) -> None:
        reads = self._peer(who).reads
        if reads.held:
            reads.settle(index % len(reads.held))

    # -- liveness under a fair schedule -----------------------------------------------
    @precondition(lambda self: self.live)
    @rule()
    def converge(self) -> None:
        """Run every member fairly until the partitions sit with their owners: within
        BOUND of the last lease of a crashed member running out (or of now)."""
        crashed = [end for me, end in self.board.members.items() if me not in self.live]
        deadline = max([self.board.now, *crashed]) + BOUND + 1e-9
        self._due_from_now()
        while self.live:
            for peer in list(self.live.values()):
                if peer.due(self.board.now):
                    peer.round()
                if not peer.reads.in_flight:
                    peer.reads.send(self.board.now + READ)
            self.exclusive()
            if self._settled():
                return
            after = self._next_event()
            assert after <= deadline, (
                f"partitions not with their owners {BOUND} s after the members settled: "
                f"{self._where()}"
            )
            self.board.now = after
            self._deliver_due()

    def _due_from_now(self) -> None:
        now = self.board.now
        for peer in self.live.values():
            reads = peer.reads
            reads.in_flight = [(asked, min(due, now + READ)) for asked, due in reads.in_flight]
            reads.held = [(p, min(due, now + SETTLE)) for p, due in reads.held]

    def _next_event(self) -> float:
        times = [peer.wake_at for peer in self.live.values()]
        for peer in self.live.values():
            times += [due for _, due in peer.reads.in_flight]
            times += [due for _, due in peer.reads.held]
        return max(self.board.now, min(times))

    def _deliver_due(self) -> None:
        now = self.board.now
        for peer in self.live.values():
            reads = peer.reads
            for index in reversed(range(len(reads.held))):
                if reads.held[index][1] <= now:
                    reads.settle(index)
            for index in reversed(range(len(reads.in_flight))):
                if reads.in_flight[index][1] <= now:
                    reads.arrive(index, 2**PARTITIONS - 1, now + SETTLE)

    def _settled(self) -> bool:
        want = owners(self.live, PARTITIONS)
        return all(
            owner is not None
            and self.live[owner].member.ownership.phase(p) is Phase.OWNED
            and p in self.live[owner].reads.reading
            for p, owner in enumerate(want)
        )

    def _where(self) -> str:
        return "; ".join(
            f"{me}: {dict(sorted(peer.member.ownership.claims.items()))}"
            for me, peer in self.live.items()
        )

    def teardown(self) -> None:
        self.converge()

    # -- safety ------------------------------------------------------------------------
    @invariant()
    def exclusive(self) -> None:
        engaged = Counter(p for peer in self.live.values() for p in peer.reads.engaged())
        twice = {p: n for p, n in engaged.items() if n > 1}
        assert not twice, f"partitions engaged by two live members: {twice}; {self._where()}"

    @invariant()
    def fenced(self) -> None:
        assert self.board.broken == []
        for epochs in self.board.epochs.values():
            assert epochs == sorted(set(epochs)), f"epochs not strictly increasing: {epochs}"
        for me, peer in self.live.items():
            for p, epoch in peer.member.ownership.held().items():
                assert self.board.holder(p) == (me, epoch), f"{me} believes it holds {p}"


OwnershipProtocol.TestCase.settings = settings(
    max_examples=1000, stateful_step_count=20, deadline=None
)
test_ownership_protocol = OwnershipProtocol.TestCase


# -- the driver's loop, on a virtual clock ----------------------------------------------
class Feed(Leases):
    """The in-memory store, telling its member of changes and able to fail."""

    def __init__(self, board: Board, me: str) -> None:
        super().__init__(board, me)
        self.news = asyncio.Event()
        self.failing = False

    async def renew(self, held: Mapping[int, int]) -> Heartbeat:
        if self.failing:
            raise ConnectionLost("the store went away")
        return await super().renew(held)

    async def changed(self) -> bool:
        await self.news.wait()
        self.news.clear()
        return True


async def _run_for(clock: VirtualClock, board: Board, seconds: float) -> None:
    for _ in range(int(seconds * 100)):
        clock.advance(0.01)
        board.now = clock.time()
        for _ in range(5):
            await asyncio.sleep(0)


async def test_the_loop_renews_in_time_wakes_on_news_and_breaks_when_the_store_fails() -> None:
    clock, board = VirtualClock(start=1000.0), Board()
    feeds = {me: Feed(board, me) for me in ("a", "b")}
    reads = {me: Reads(board, me) for me in ("a", "b")}
    members = {
        me: Member(Ownership(me, PARTITIONS, ttl=TTL), feeds[me], reads[me], clock)
        for me in ("a", "b")
    }
    broken: list[Exception] = []

    async def broke(exc: Exception) -> None:
        broken.append(exc)

    await members["a"].join()
    assert reads["a"].reading == {0, 1, 2, 3}, "alone: every partition before join returns"
    await members["a"].start(broke)
    await _run_for(clock, board, 2 * TTL + EVERY / 2)  # halfway between two renewals
    assert board.members["a"] > board.now, "renewed every third of the lease"
    await members["b"].join()  # finds every partition held
    await members["b"].start(broke)
    feeds["a"].news.set()  # a watching store tells a at once
    await _run_for(clock, board, 0.1)
    assert reads["a"].reading == {0, 2}, "a handed its second share over at once"
    await _run_for(clock, board, EVERY)
    assert reads["b"].reading == {1, 3}, "b took it on its next try"
    feeds["b"].failing = True
    await _run_for(clock, board, EVERY)
    assert [str(e) for e in broken] == ["the store went away"]
    await members["b"].stopped()
    await members["a"].leave()
    assert board.live() == {"b"}, "a left at once; b's lease runs on until it runs out"
    assert board.holder(0) is None, "leaving gives every lease up at once"


async def test_a_member_stopped_before_its_loop_ran_leaves_nothing_behind() -> None:
    async def broke(exc: Exception) -> None:
        raise AssertionError(exc)

    async def join_and_leave_at_once(board: Board) -> None:
        member = Member(Ownership("a", 2, ttl=TTL), Feed(board, "a"), Reads(board, "a"), board)
        await member.join()
        await member.start(broke)
        await member.leave()  # before either task ran

    board = Board()
    await join_and_leave_at_once(board)
    gc.collect()  # a coroutine never awaited would warn here (an error under pytest)
    assert board.locks == {}


def test_actions_cover_every_decision() -> None:
    # one of each kind appears in the table above; a new kind needs a scenario
    kinds = {type(a) for script in SCENARIOS.values() for a in script}
    assert {Renew, Refresh, Take, Read, Stop, GiveUp, Wait} <= kinds


# -- fencing: a paused owner cannot write after its successor took over ------------------
def new_events(count: int) -> list[NewEvent]:
    return [NewEvent(f"e-{n}", "orders.Billed", "1.0.0", b"{}") for n in range(count)]


async def test_a_paused_owner_cannot_write_after_the_new_owner_took_over(tmp_path: Any) -> None:
    board = Board()
    a, b = Peer(board, "a"), Peer(board, "b")
    for member in (a.member, b.member):
        member.scope = "orders/billing"
    a.round()
    assert a.reads.reading == {0, 1, 2, 3}
    old = a.member.fence(2)
    assert old is not None
    assert old.scope == "orders/billing/2"
    assert b.member.fence(2) is None, "never held: no fence"
    store = await SQLiteEventStore.open(tmp_path / "events.db")
    try:
        await store.append("order-7", new_events(1), 0, fence=old)
        # a is paused (SIGSTOP, a frozen clock): it runs no round for longer than its lease
        board.now += TTL + EVERY
        b.round()
        assert b.reads.reading == {0, 1, 2, 3}, "b took every partition over"
        new = b.member.fence(2)
        assert new is not None
        assert new.epoch > old.epoch
        await store.append("order-7", new_events(1), 1, fence=new)
        # a wakes up mid-handler, before its loop learnt anything: the store refuses it
        with pytest.raises(StaleEpoch) as caught:
            await store.append("order-7", new_events(1), 2, fence=a.member.fence(2))
        assert (caught.value.epoch, caught.value.current) == (old.epoch, new.epoch)
        a.round()  # its renewal says the leases are lost: it stops reading
        assert a.reads.reading == set()
        assert a.member.fence(2) == old, "the lost lease's epoch stays, so writes stay refused"
        with pytest.raises(StaleEpoch):
            await store.commit_projection("by-order", 0, 1, [], fence=a.member.fence(2))
        assert len(await store.read_stream("order-7")) == 2
    finally:
        await store.close()
