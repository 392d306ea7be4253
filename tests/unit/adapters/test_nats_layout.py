"""The NATS adapter's sans-IO parts of delayed delivery, priority levels and replay:
subjects and consumer names of a channel, its layout read back from a stream's
subjects, start positions as deliver policies, the headers a delayed message waits
under, and the order held messages are handed out in."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime

import pytest
from nats.js import api

from seawall import ConfigurationError, FromOffsets, FromTime, partition_for
from seawall.transports.nats._layout import Stream, deliver_policy, stream_subjects
from seawall.transports.nats._levels import by_level
from seawall.transports.nats._schedule import LOG, NOT_BEFORE, moved_headers, scheduled_headers


def test_subjects_name_partitions_or_levels_and_the_schedule() -> None:
    assert stream_subjects("orders", 2, 1) == [
        "seawall.orders.0",
        "seawall.orders.1",
        "seawall.orders.scheduled",
    ]
    assert stream_subjects("jobs", 1, 3) == [
        "seawall.jobs.0.0",
        "seawall.jobs.0.1",
        "seawall.jobs.0.2",
        "seawall.jobs.scheduled",
    ]


def test_every_process_reads_the_same_layout_back() -> None:
    parts = Stream.read_back("o", "SEAWALL_o", stream_subjects("o", 4, 1), ephemeral=False)
    assert (parts.partitions, parts.levels, parts.logs, parts.scheduled) == (4, 1, 4, True)
    assert parts.subject(3) == "seawall.o.3"
    assert parts.consumer("workers", 3) == "workers_p3"
    levels = Stream.read_back("j", "SEAWALL_j", stream_subjects("j", 1, 3), ephemeral=False)
    assert (levels.partitions, levels.levels, levels.logs) == (1, 3, 3)
    assert levels.subject(2) == "seawall.j.0.2"
    assert levels.consumer("workers", 2) == "workers_l2"
    assert levels.schedule == "seawall.j.scheduled"
    old = Stream.read_back("x", "SEAWALL_x", ["seawall.x.0"], ephemeral=False)
    assert (old.logs, old.scheduled, old.consumer("workers", 0)) == (1, False, "workers")


def test_a_message_goes_to_its_key_partition_or_its_clamped_level() -> None:
    parts = Stream(channel="o", name="SEAWALL_o", partitions=4, ephemeral=False)
    assert parts.log_for("alice", 9) == partition_for("alice", 4)
    levels = Stream(channel="j", name="SEAWALL_j", partitions=1, ephemeral=False, levels=3)
    assert [levels.log_for("alice", p) for p in (-1, 0, 2, 7)] == [0, 0, 2, 2]


def test_a_start_is_a_deliver_policy() -> None:
    stream = Stream(channel="o", name="SEAWALL_o", partitions=2, ephemeral=False)
    assert deliver_policy(stream, "earliest", 0, 10) == (api.DeliverPolicy.ALL, None, None)
    assert deliver_policy(stream, "latest", 0, 10) == (api.DeliverPolicy.NEW, None, None)
    at = deliver_policy(stream, FromTime(1_700_000_000.5), 1, 10)
    assert at == (
        api.DeliverPolicy.BY_START_TIME,
        None,
        datetime(2023, 11, 14, 22, 13, 20, 500000, tzinfo=UTC),
    )
    # offset o is sequence o + 1; past the last sequence: the next one published
    offsets = FromOffsets((3, 40))
    assert deliver_policy(stream, offsets, 0, 10)[:2] == (api.DeliverPolicy.BY_START_SEQUENCE, 4)
    assert deliver_policy(stream, offsets, 1, 10)[1] == 11
    with pytest.raises(ConfigurationError, match="2 logs"):
        deliver_policy(stream, FromOffsets((1,)), 0, 10)


def test_a_delayed_message_waits_under_another_msg_id_and_moves_under_its_own() -> None:
    published = {"ce-id": "m-1", "Nats-Msg-Id": "m-1"}
    waiting = scheduled_headers(published, 1_700_000_000.25, 2)
    assert waiting == {
        "ce-id": "m-1",
        "Nats-Msg-Id": "m-1.scheduled",
        NOT_BEFORE: "1700000000.25",
        LOG: "2",
    }
    assert moved_headers(waiting) == published


@dataclass
class Held:
    partition: int
    name: str


def test_held_messages_wait_highest_level_first_fifo_within_a_level() -> None:
    ready: deque[Held] = deque()
    for level, name in [(0, "a"), (2, "b"), (1, "c"), (2, "d"), (0, "e"), (1, "f")]:
        by_level(ready, Held(level, name))
    assert [h.name for h in ready] == ["b", "d", "c", "f", "a", "e"]
