"""``GroupState.take_many``: the bulk take of the memory transport's delivery loop.

It must hand out exactly what the same number of ``take`` calls would, so each
test runs both on twin channels and compares.
"""

from __future__ import annotations

from seawall._broker.log import ChannelState, GroupState, Taken

A, B = 1, 2  # member ids


def twins(entries: int, partitions: int = 1, prefetch: int = 10) -> list[GroupState[str]]:
    """Two identical groups on two identical channels, member A joined to each."""
    groups = []
    for _ in range(2):
        state: ChannelState[str] = ChannelState(partitions)
        for p in range(partitions):
            for offset in range(entries):
                state.append(p, f"p{p}-{offset}", 0.0)
        group = state.group("g", "earliest")
        group.join(A, prefetch)
        groups.append(group)
    return groups


def one_by_one(group: GroupState[str], limit: int, now: float = 0.0) -> list[Taken[str]]:
    got = []
    while len(got) < limit and (taken := group.take(A, now)) is not None:
        got.append(taken)
    return got


def test_fresh_offsets_come_as_take_gives_them_within_the_limit_and_credit() -> None:
    bulk, single = twins(entries=30, prefetch=12)
    assert bulk.take_many(A, 0.0, 5) == one_by_one(single, 5)
    assert bulk.take_many(A, 0.0, 64) == one_by_one(single, 64)  # the credit ends it: 7 more
    assert bulk.credit(A) == single.credit(A) == 0
    assert bulk.take_many(A, 0.0, 64) == []
    assert bulk.ack(A, 0, 3)
    assert bulk.take_many(A, 0.0, 64) == [Taken(0, 12, 1, "p0-12")]


def test_due_redeliveries_keep_their_attempt_count_and_come_first() -> None:
    bulk, single = twins(entries=6)
    for group in (bulk, single):
        first = group.take(A, 0.0)
        assert first is not None
        group.nack(A, first.partition, first.offset, not_before=5.0)
    assert bulk.take_many(A, 1.0, 10) == one_by_one(single, 10, now=1.0)  # not due yet
    for group in (bulk, single):
        for offset in range(1, 6):
            group.ack(A, 0, offset)
    redelivered = bulk.take_many(A, 5.0, 10)
    assert redelivered == one_by_one(single, 10, now=5.0)
    assert redelivered == [Taken(0, 0, 2, "p0-0")]


def test_several_partitions_go_through_take() -> None:
    bulk, single = twins(entries=4, partitions=3)
    assert bulk.take_many(A, 0.0, 100) == one_by_one(single, 100)
    assert len(bulk.take_many(A, 0.0, 100)) == 0


def test_a_member_that_left_or_never_joined_gets_nothing_and_leaving_returns_the_batch() -> None:
    (group, _) = twins(entries=5)
    assert group.take_many(B, 0.0, 10) == []
    batch = group.take_many(A, 0.0, 3)
    group.leave(A, now=0.0)
    assert group.take_many(A, 0.0, 10) == []
    group.join(B, prefetch=10)
    again = group.take_many(B, 0.0, 10)
    assert sorted((t.offset, t.attempt) for t in again) == [(0, 2), (1, 2), (2, 2), (3, 1), (4, 1)]
    assert [t.offset for t in batch] == [0, 1, 2]


def test_untake_gives_a_delivery_back_as_if_it_was_never_taken() -> None:
    (group, _) = twins(entries=3, prefetch=3)
    batch = group.take_many(A, 0.0, 3)
    assert group.credit(A) == 0
    assert group.untake(A, 0, batch[2].offset, now=0.0)
    assert not group.untake(A, 0, batch[2].offset, now=0.0)  # no longer held
    assert not group.untake(B, 0, batch[1].offset, now=0.0)  # never held by B
    assert group.credit(A) == 1
    assert group.take_many(A, 0.0, 3) == [Taken(0, 2, 1, "p0-2")]  # still a first attempt
    group.nack(A, 0, 0, not_before=0.0)
    redelivered = group.take(A, 0.0)
    assert redelivered == Taken(0, 0, 2, "p0-0")
    assert group.untake(A, 0, 0, now=0.0)
    assert group.take(A, 0.0) == Taken(0, 0, 2, "p0-0")  # the nack counted, the untake not
