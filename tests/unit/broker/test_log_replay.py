"""The memory log model's priority levels and replay (``ChannelState``, ``PartitionLog``):
store times kept beside entries and trimmed with them, groups started at offsets or at
a time, levels taken highest first."""

from __future__ import annotations

import pytest

from seawall import ConfigurationError, FromOffsets, FromTime
from seawall._broker.log import ChannelState, PartitionLog


def test_offset_at_finds_the_first_entry_stored_at_or_after_a_time() -> None:
    log: PartitionLog[str] = PartitionLog()
    for n, t in enumerate([1.0, 2.0, 2.0, 3.0]):
        log.append(f"e{n}", t)
    assert [log.offset_at(t) for t in (0.5, 2.0, 2.5, 3.0, 9.0)] == [0, 1, 3, 3, 4]
    log.trim(2)
    assert (log.base, list(log.times)) == (2, [2.0, 3.0])
    assert [log.offset_at(t) for t in (0.5, 2.5, 9.0)] == [2, 3, 4]


def test_a_new_group_starts_at_offsets_or_at_a_time() -> None:
    state: ChannelState[str] = ChannelState(2)
    for n in range(6):
        state.append(n % 2, f"p{n % 2}-{n // 2}", float(n))
    by_offset = state.group("o", FromOffsets((1, 9)))  # past the end: the next one
    by_offset.join(1, 10)
    taken = [t.entry for t in iter(lambda: by_offset.take(1, 0.0), None)]
    assert taken == ["p0-1", "p0-2"]
    state.append(1, "p1-3", 6.0)
    assert by_offset.take(1, 0.0) is not None
    by_time = state.group("t", FromTime(3.0))  # stored at 3, 4, 5 and 6
    by_time.join(1, 10)
    got = sorted(t.entry for t in iter(lambda: by_time.take(1, 0.0), None))
    assert got == ["p0-2", "p1-1", "p1-2", "p1-3"]
    with pytest.raises(ConfigurationError, match="2 logs"):
        state.group("bad", FromOffsets((0,)))


def test_levels_are_taken_highest_first_and_partition_zero_is_shared() -> None:
    state: ChannelState[str] = ChannelState(1, levels=3)
    for n, level in enumerate([0, 2, 1, 2, 0]):
        state.append(level, f"{level}-{n}", float(n))
    group = state.group("g", "earliest")
    group.join(1, 10)
    group.join(2, 10)  # members share the one partition: both may take any level
    taken = [group.take(1 + n % 2, 0.0) for n in range(5)]
    assert [t.entry for t in taken if t is not None] == ["2-1", "2-3", "1-2", "0-0", "0-4"]
