"""Which groups expire once idle, and when (sans-IO: fed ``now``)."""

from __future__ import annotations

import pytest

from seawall._broker.idle import IdleGroups, expiry_ms


def test_a_group_expires_its_expiry_after_its_last_member_left() -> None:
    idle = IdleGroups()
    idle.expiring(("beats", "r1"), 10.0, now=100.0)  # new, no member yet
    idle.joined(("beats", "r1"))
    assert idle.next_due() is None, "a group with a member never expires"
    assert idle.due(1e9) == []
    idle.left(("beats", "r1"), now=200.0)
    assert idle.next_due() == 210.0
    assert idle.due(209.9) == []
    assert idle.due(210.0) == [("beats", "r1")]
    idle.joined(("beats", "r1"))  # back in time: it stays
    assert idle.due(1e9) == []


def test_only_expiring_groups_are_tracked_and_deleting_forgets_them() -> None:
    idle = IdleGroups()
    idle.left(("beats", "lasting"), now=0.0)  # no expiry: never due
    idle.expiring(("beats", "a"), 1.0, now=0.0)
    idle.expiring(("beats", "b"), 5.0, now=0.0)
    idle.expiring(("known", "a"), 1.0, now=0.0)
    assert sorted(idle.due(10.0)) == [("beats", "a"), ("beats", "b"), ("known", "a")]
    idle.forget("beats", "a")
    assert idle.next_due() == 1.0
    idle.forget("known")
    assert idle.due(10.0) == [("beats", "b")]


def test_an_expiry_is_kept_in_whole_milliseconds_and_must_be_positive() -> None:
    assert expiry_ms(300) == 300_000
    assert expiry_ms(1e-6) == 1
    with pytest.raises(ValueError, match="more than 0"):
        expiry_ms(-1)
