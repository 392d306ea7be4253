"""The roster: live instances from heartbeats, expiry, leaving, and what counts as known."""

from __future__ import annotations

from seawall.discovery import EXPIRY, Announcement, Handles, Roster


def beat(service: str = "orders", instance: str = "i1", **fields: object) -> Announcement:
    return Announcement(service=service, instance=instance, **fields)  # type: ignore[arg-type]


def test_an_instance_is_live_until_it_misses_beats_for_the_expiry() -> None:
    roster = Roster()
    roster.feed(beat(), now=100.0)
    roster.feed(beat(), now=101.0)
    assert [e.announcement.instance for e in roster.live(101.0 + EXPIRY)] == ["i1"]
    assert roster.live(101.0 + EXPIRY + 0.01) == []


def test_the_newest_beat_replaces_the_figures_and_keeps_first_seen() -> None:
    roster = Roster()
    roster.feed(beat(in_flight=1), now=10.0)
    roster.feed(beat(in_flight=7), now=11.0)
    (entry,) = roster.live(11.0)
    assert (entry.announcement.in_flight, entry.first_seen, entry.last_seen) == (7, 10.0, 11.0)


def test_leaving_drops_the_instance_at_once() -> None:
    roster = Roster()
    roster.feed(beat(instance="i1"), now=0.0)
    roster.feed(beat(instance="i2"), now=0.0)
    roster.feed(beat(instance="i1", leaving=True), now=0.5)
    assert [e.announcement.instance for e in roster.live(0.5)] == ["i2"]


def test_membership_changes_count_up_the_generation() -> None:
    roster = Roster()
    roster.feed(beat(instance="i1"), now=0.0)
    first = roster.generation
    roster.feed(beat(instance="i1"), now=1.0)
    assert roster.generation == first  # a beat of a known instance changes nothing
    roster.feed(beat(instance="i2"), now=1.0)
    assert roster.generation == first + 1
    assert [a.instance for a in roster.expire(1.0 + EXPIRY + 0.5)] == ["i1", "i2"]
    assert roster.generation == first + 2


def test_judge_tells_live_absent_unknown_and_not_yet() -> None:
    roster = Roster()
    roster.listening(0.0)
    handles = (Handles(channel="orders.audit", group="orders"),)
    roster.feed(beat(handles=handles), now=0.0)
    assert roster.judge(0.1, "orders") == "live"
    assert roster.judge(0.1, "orders.audit") == "live"
    assert roster.judge(0.1, "kitchen") == "not-yet"  # has not heard for an expiry yet
    assert roster.judge(EXPIRY, "kitchen") == "unknown"
    assert roster.judge(EXPIRY + 5, "orders") == "absent"  # gone, but it existed: queue


def test_a_replayed_history_makes_the_roster_ready_at_once() -> None:
    roster = Roster()
    roster.listening(50.0, caught_up=True)
    roster.remember(beat(service="kitchen"))
    assert roster.judge(50.0, "kitchen") == "absent"
    assert roster.judge(50.0, "billing") == "unknown"
    assert roster.live(50.0) == []  # history is known, not live


def test_known_names_are_bounded() -> None:
    roster = Roster(max_known=3)
    for n in range(5):
        roster.remember(beat(service=f"s{n}"))
    assert [roster.known(f"s{n}") for n in range(5)] == [False, False, True, True, True]
