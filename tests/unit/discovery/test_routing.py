"""Routing strategies as pure pickers over live instances."""

from __future__ import annotations

from collections import Counter

import pytest

from seawall import ConfigurationError
from seawall.discovery import Announcement, Router
from seawall.discovery.routing import check_route


def inst(name: str, *, host: str = "h1", in_flight: int = 0, p50: float = 0.0) -> Announcement:
    return Announcement(
        service="s",
        instance=name,
        host=host,
        in_flight=in_flight,
        handler_p50_ms=p50,
        inbox=f"s.@{name}",
    )


THREE = [inst("a"), inst("b"), inst("c")]


def test_round_robin_takes_each_in_turn() -> None:
    router = Router()
    picks = [router.pick("round-robin", THREE)[0].instance for _ in range(6)]
    assert picks == ["a", "b", "c", "a", "b", "c"]


def test_least_outstanding_avoids_the_instance_with_replies_pending() -> None:
    router = Router()
    for _ in range(3):
        router.started("a")
    router.started("b")
    assert router.pick("least-outstanding", THREE)[0].instance == "c"
    router.finished("a", 0.01)
    router.started("c")
    router.started("c")
    assert router.pick("least-outstanding", THREE)[0].instance == "b"


def test_lowest_latency_prefers_the_fastest_reply_seen() -> None:
    router = Router()
    router.started("a")
    router.finished("a", 0.5)
    router.started("b")
    router.finished("b", 0.05)
    router.started("c")
    router.finished("c", 0.2)
    assert router.pick("lowest-latency", THREE)[0].instance == "b"
    for _ in range(20):  # b slows down: the moving average follows
        router.started("b")
        router.finished("b", 1.0)
    assert router.pick("lowest-latency", THREE)[0].instance == "c"


def test_local_first_stays_on_this_host_while_it_can() -> None:
    router = Router(host="here")
    mixed = [inst("a", host="there"), inst("b", host="here")]
    assert router.pick("local-first", mixed)[0].instance == "b"
    assert router.pick("local-first", [inst("a", host="there")])[0].instance == "a"


def test_sticky_keeps_a_key_on_one_instance_and_moves_few_keys_on_change() -> None:
    router = Router()
    keys = [f"k{n}" for n in range(300)]
    before = {k: router.pick("sticky", THREE, k)[0].instance for k in keys}
    assert before == {k: router.pick("sticky", THREE[::-1], k)[0].instance for k in keys}
    assert set(Counter(before.values())) == {"a", "b", "c"}
    four = [*THREE, inst("d")]
    after = {k: router.pick("sticky", four, k)[0].instance for k in keys}
    moved = [k for k in keys if before[k] != after[k]]
    assert all(after[k] == "d" for k in moved)  # only keys that go to the newcomer move
    assert 0 < len(moved) < len(keys) / 2


def test_broadcast_takes_every_instance_and_nothing_live_picks_none() -> None:
    router = Router()
    assert router.pick("broadcast", THREE) == THREE
    assert router.pick("least-outstanding", []) == []


def test_an_unknown_route_is_refused_with_the_choices() -> None:
    with pytest.raises(ConfigurationError, match="least-outstanding"):
        check_route("fastest")
