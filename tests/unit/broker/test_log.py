"""Sans-IO channel state: fed offsets and ``now``, no event loop, no sleeping."""

from __future__ import annotations

from seawall._broker.log import ChannelState, GroupState, Taken

A, B, C = 1, 2, 3  # member ids


def channel(entries: int = 0, partitions: int = 1) -> ChannelState[str]:
    """A channel with ``entries`` entries on each partition, named ``p<partition>-<offset>``."""
    state: ChannelState[str] = ChannelState(partitions)
    for p in range(partitions):
        for offset in range(entries):
            state.append(p, f"p{p}-{offset}", 0.0)
    return state


def take(group: GroupState[str], member: int, now: float = 0.0) -> Taken[str]:
    taken = group.take(member, now)
    assert taken is not None, f"member {member} got nothing at {now}"
    return taken


def take_all(group: GroupState[str], member: int, now: float = 0.0) -> list[Taken[str]]:
    """Everything ``member`` can take now (bounded by its credit)."""
    got = []
    while (taken := group.take(member, now)) is not None:
        got.append(taken)
    return got


def test_commit_advances_only_over_a_contiguous_run() -> None:
    state = channel(entries=5)
    group = state.group("g", "earliest")
    group.join(A, prefetch=10)
    taken = take_all(group, A)
    assert [t.offset for t in taken] == [0, 1, 2, 3, 4]
    assert [t.entry for t in taken[:2]] == ["p0-0", "p0-1"]

    for offset, committed in [(2, 0), (3, 0), (0, 1), (1, 4), (4, 5)]:
        assert group.ack(A, 0, offset)
        assert group.committed(0) == committed, f"after acking {offset}"
    assert group.backlog() == 0


def test_nacked_offset_holds_the_commit_point() -> None:
    state = channel(entries=3)
    group = state.group("g", "earliest")
    group.join(A, prefetch=10)
    take_all(group, A)
    assert group.nack(A, 0, 0, not_before=0.0)
    assert group.ack(A, 0, 1)
    assert group.ack(A, 0, 2)
    assert group.committed(0) == 0
    assert group.backlog() == 3
    again = take(group, A)
    assert (again.offset, again.attempt) == (0, 2)
    assert group.ack(A, 0, 0)
    assert group.committed(0) == 3


def test_trim_keeps_what_the_slowest_group_has_not_settled() -> None:
    state = channel(entries=5)
    fast = state.group("fast", "earliest")
    slow = state.group("slow", "earliest")
    fast.join(A, prefetch=10)
    slow.join(B, prefetch=10)
    for t in take_all(fast, A):
        fast.ack(A, 0, t.offset)
    slow_taken = take_all(slow, B)
    for t in slow_taken[:2]:
        slow.ack(B, 0, t.offset)

    assert state.trim() == 2
    assert state.retained() == 3
    assert state.logs[0].base == 2
    # what the slow group still holds is intact after the trim
    assert slow.nack(B, 0, 2, not_before=0.0)
    assert take(slow, B).entry == "p0-2"

    for offset in (2, 3, 4):
        slow.ack(B, 0, offset)
    assert state.trim() == 3
    assert state.retained() == 0
    # a group created now starts at what is left, not at the trimmed entries
    state.append(0, "p0-5", 0.0)
    late = state.group("late", "earliest")
    late.join(C, prefetch=10)
    assert [t.entry for t in take_all(late, C)] == ["p0-5"]


def test_no_trim_without_groups() -> None:
    state = channel(entries=3)
    assert state.trim() == 0
    assert state.retained() == 3


def test_take_needs_credit() -> None:
    state = channel(entries=4)
    group = state.group("g", "earliest")
    group.join(A, prefetch=2)
    first = take_all(group, A)
    assert [t.offset for t in first] == [0, 1]
    assert group.take(A, 0.0) is None
    assert group.ack(A, 0, 0)
    assert take(group, A).offset == 2
    assert group.take(A, 0.0) is None
    assert group.nack(A, 0, 1, not_before=0.0)  # a nack gives credit back too
    assert take(group, A).offset == 1
    assert group.take(A, 0.0) is None
    assert group.take(B, 0.0) is None  # not a member: no credit at all


def test_retry_waits_for_not_before_in_time_order() -> None:
    state = channel(entries=3)
    group = state.group("g", "earliest")
    group.join(A, prefetch=10)
    take(group, A)
    take(group, A)
    assert group.nack(A, 0, 0, not_before=20.0)
    assert group.nack(A, 0, 1, not_before=10.0)
    assert group.next_retry() == 10.0

    assert take(group, A, now=5.0).offset == 2  # new entries flow meanwhile
    assert group.take(A, 9.99) is None
    ten = take(group, A, now=10.0)
    assert (ten.offset, ten.attempt) == (1, 2)
    assert group.next_retry() == 20.0
    assert group.take(A, 19.0) is None
    twenty = take(group, A, now=25.0)
    assert (twenty.offset, twenty.attempt) == (0, 2)
    assert group.next_retry() is None


def test_nack_or_ack_of_a_delivery_not_held_is_refused() -> None:
    state = channel(entries=1)
    group = state.group("g", "earliest")
    group.join(A, prefetch=10)
    group.join(B, prefetch=10)
    t = take(group, A)
    assert not group.ack(B, 0, t.offset)  # someone else's
    assert group.nack(A, 0, t.offset, not_before=0.0)
    assert not group.ack(A, 0, t.offset)  # already returned
    assert not group.holds(A, 0, t.offset)
    assert group.committed(0) == 0


def test_leave_returns_in_flight_for_redelivery() -> None:
    state = channel(entries=3)
    group = state.group("g", "earliest")
    group.join(A, prefetch=2)
    group.join(B, prefetch=10)
    assert [t.offset for t in take_all(group, A)] == [0, 1]
    assert group.ack(A, 0, 0)
    group.leave(A, now=3.0)

    assert not group.ack(A, 0, 1)  # a late ack from the departed member settles nothing
    assert group.committed(0) == 1
    redelivered = take(group, B, now=3.0)
    assert (redelivered.offset, redelivered.attempt) == (1, 2)
    fresh = take(group, B, now=3.0)
    assert (fresh.offset, fresh.attempt) == (2, 1)
    assert group.take(A, 3.0) is None


def test_one_partition_is_shared_by_every_member() -> None:
    state = channel(entries=4)
    group = state.group("g", "earliest")
    group.join(A, prefetch=2)
    group.join(B, prefetch=2)
    assert [t.offset for t in take_all(group, A)] == [0, 1]
    assert [t.offset for t in take_all(group, B)] == [2, 3]


def test_partitions_are_split_between_members_in_join_order() -> None:
    state = channel(entries=2, partitions=4)
    group = state.group("g", "earliest")
    group.join(A, prefetch=100)
    group.join(B, prefetch=100)
    a = take_all(group, A)
    b = take_all(group, B)
    assert {t.partition for t in a} == {0, 2}
    assert {t.partition for t in b} == {1, 3}
    assert len(a) == len(b) == 4
    # within a partition, offsets come in order
    assert [t.offset for t in a if t.partition == 2] == [0, 1]


def test_a_lone_member_owns_every_partition() -> None:
    state = channel(entries=1, partitions=3)
    group = state.group("g", "earliest")
    group.join(A, prefetch=100)
    assert sorted(t.partition for t in take_all(group, A)) == [0, 1, 2]


def test_rebalance_waits_for_the_previous_owner_to_drain() -> None:
    state = channel(entries=4, partitions=2)
    group = state.group("g", "earliest")
    group.join(A, prefetch=4)
    held = [take(group, A) for _ in range(2)]
    assert [(t.partition, t.offset) for t in held] == [(0, 0), (1, 0)]
    group.join(B, prefetch=10)  # partition 1 is B's from now on, once A lets go of it

    assert group.take(B, 0.0) is None  # A still holds an offset of partition 1
    # A has credit left but takes no more of the partition it is handing over,
    # or a busy owner would never drain and B would wait for ever
    assert [(t.partition, t.offset) for t in take_all(group, A)] == [(0, 1), (0, 2)]
    assert group.take(B, 0.0) is None

    assert group.nack(A, 1, 0, not_before=0.0)
    # drained: B takes over, starting with the returned head so key order holds
    handed = take_all(group, B)
    assert [(t.partition, t.offset, t.attempt) for t in handed] == [
        (1, 0, 2),
        (1, 1, 1),
        (1, 2, 1),
        (1, 3, 1),
    ]
    assert [(t.partition, t.offset) for t in take_all(group, A)] == [(0, 3)]


def test_leaving_owner_hands_its_partitions_over_at_once() -> None:
    state = channel(entries=2, partitions=2)
    group = state.group("g", "earliest")
    group.join(A, prefetch=10)
    group.join(B, prefetch=10)
    held = take_all(group, B)
    assert {t.partition for t in held} == {1}
    group.leave(B, now=1.0)
    got = take_all(group, A, now=1.0)
    assert [(t.partition, t.offset, t.attempt) for t in got if t.partition == 1] == [
        (1, 0, 2),
        (1, 1, 2),
    ]


def test_start_latest_skips_existing_entries() -> None:
    state = channel(entries=3)
    late = state.group("late", "latest")
    early = state.group("early", "earliest")
    late.join(A, prefetch=10)
    early.join(B, prefetch=10)
    assert late.take(A, 0.0) is None
    assert late.backlog() == 0
    state.append(0, "p0-3", 0.0)
    assert [t.entry for t in take_all(late, A)] == ["p0-3"]
    assert [t.entry for t in take_all(early, B)] == ["p0-0", "p0-1", "p0-2", "p0-3"]
    # the start applies to a new group only: a second member joins where the group is
    late.join(C, prefetch=10)
    assert late.take(C, 0.0) is None


def test_latest_group_does_not_hold_back_the_trim() -> None:
    state = channel(entries=3)
    early = state.group("early", "earliest")
    early.join(A, prefetch=10)
    for t in take_all(early, A):
        early.ack(A, 0, t.offset)
    state.group("late", "latest")
    assert state.trim() == 3
