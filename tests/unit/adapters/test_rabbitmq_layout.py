"""The sans-IO parts of the RabbitMQ adapter: names, the delay ladder, queue bounds
and the member roster that decides who reads which partition."""

from __future__ import annotations

import pytest

from seawall.transports.rabbitmq._layout import (
    Layout,
    channel_queue_arguments,
    delay_names,
    delay_step,
    expires_ms,
    group_queue_arguments,
    inbox_queue,
    max_length,
)
from seawall.transports.rabbitmq._members import Roster


def test_names_are_broker_safe_distinct_and_prefixed() -> None:
    layout = Layout("orders.events", 4)
    assert layout.exchange == "seawall.orders_2eevents"
    assert layout.unclaimed == "seawall.orders_2eevents.unclaimed"
    assert layout.queue("billing.v2", 3) == "seawall.orders_2eevents.g.billing_2ev2.3"
    assert layout.members("billing") == "seawall.orders_2eevents.g.billing.members"
    assert layout.scheduled(220) == "seawall.orders_2eevents.delay.220ms"
    assert Layout("orders_2eevents", 1).exchange != layout.exchange  # escaping is reversible
    assert inbox_queue("_inbox.abc") == "seawall._5finbox_2eabc"
    assert layout.groups == "seawall.orders_2eevents.groups"
    assert len(set(layout.every_queue(["a", "b"]))) == 3 + 2 * 4
    assert layout.scheduled(220) in layout.every_delay()


@pytest.mark.parametrize(
    ("seconds", "step"),
    [
        (0.0, 10),
        (0.001, 10),
        (0.01, 10),
        (0.0101, 12),
        (0.18, 180),
        (0.2, 220),
        (2.5, 2700),
        (61.0, 68_000),
        (1e9, 82_000_000),
    ],
)
def test_delays_round_up_to_the_ladder(seconds: float, step: int) -> None:
    assert delay_step(seconds) == step
    assert delay_names(step) == f"seawall.delay.{step}ms"


def test_the_ladder_never_delivers_early_and_never_waits_more_than_a_quarter_more() -> None:
    for ms in range(10, 100_000, 7):
        step = delay_step(ms / 1000)
        assert ms <= step <= ms * 1.25 + 1, (ms, step)
    steps = {delay_step(ms / 1000) for ms in range(1, 3_600_000, 500)}
    assert len(steps) <= 80, "a bounded number of delay queues for an hour of delays"


def test_quorum_max_length_allows_for_the_one_extra_message_they_take() -> None:
    assert max_length(10) == 9
    assert max_length(1) == 0
    assert max_length(0) == 0


def test_roster_knows_the_live_members_and_who_holds_what() -> None:
    roster = Roster("m-b", lease=3.0)
    assert roster.live(now=0.0) == {"m-b"}, "alone"
    roster.heard("m-a", "alive", {0: 1, 1: 1, 2: 1, 3: 1}, now=0.0, epochs={})
    assert roster.live(now=1.0) == {"m-a", "m-b"}
    assert not roster.free(1, now=1.0), "m-a still announces partition 1"
    roster.heard("m-a", "alive", {0: 1, 2: 1}, now=1.5, epochs={1: 1, 3: 1})
    assert roster.free(1, now=1.6)
    assert not roster.free(0, now=1.6)
    assert roster.take(1) == 2, "one more than the highest epoch heard of"
    assert roster.live(now=5.0) == {"m-b"}, "m-a silent for a lease: it is gone"
    assert roster.free(0, now=5.0), "a dead member's announcement counts no more"
    roster.heard("m-a", "alive", {0: 1, 2: 1}, now=5.0, epochs={})
    roster.heard("m-a", "left", {}, now=5.1, epochs={})
    assert roster.live(now=5.2) == {"m-b"}, "left: gone at once"
    assert roster.free(0, now=5.2), "left: its partitions are free at once"


def test_roster_finds_the_older_of_two_claims_lost() -> None:
    roster = Roster("m-b", lease=3.0)
    roster.heard("m-a", "alive", {0: 4}, now=0.0, epochs={})
    roster.heard("m-c", "alive", {1: 4}, now=0.0, epochs={2: 9})
    held = {0: 4, 1: 4, 2: 8, 3: 1}
    assert roster.lost(held, now=1.0) == {0, 2}, "m-a's id is lower; epoch 9 of 2 is newer"
    assert roster.lost(held, now=4.0) == {2}, "m-a's claim ran out with its lease"


def test_priority_channels_use_classic_priority_queues_bounded_exactly() -> None:
    plain = channel_queue_arguments(100)
    assert plain["x-queue-type"] == "quorum"
    assert plain["x-max-length"] == 99
    levels = channel_queue_arguments(100, priorities=3)
    assert levels["x-queue-type"] == "classic"
    assert levels["x-max-priority"] == 2
    assert levels["x-max-length"] == 100
    assert group_queue_arguments(100, partitioned=True)["x-single-active-consumer"] is True
    assert "x-single-active-consumer" not in group_queue_arguments(100, partitioned=False)


def test_an_expiring_group_queue_gets_x_expires_in_whole_milliseconds() -> None:
    assert "x-expires" not in group_queue_arguments(100, partitioned=False)
    assert group_queue_arguments(100, partitioned=False, expiry=300)["x-expires"] == 300_000
    assert expires_ms(0.0001) == 1, "rounded up, never 0 (which RabbitMQ refuses)"
    assert expires_ms(1.0004) == 1001
    with pytest.raises(ValueError, match="more than 0"):
        expires_ms(0)
