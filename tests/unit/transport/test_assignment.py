"""Broker-safe names and partition assignment (sans-IO, no broker needed)."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from seawall import ConfigurationError
from seawall._transport.assignment import Leases, owners, token, wanted


def test_token_keeps_plain_names_and_escapes_the_rest() -> None:
    assert token("orders") == "orders"
    assert token("orders.events") == "orders_2eevents"
    assert token("_inbox.a-b") == "_5finbox_2ea-b"
    assert token("caf\u00e9 *>") == "caf_c3_a9_20_2a_3e"


@given(st.text(min_size=1), st.text(min_size=1))
def test_tokens_are_name_safe_and_distinct(a: str, b: str) -> None:
    assert re.fullmatch(r"[A-Za-z0-9_-]+", token(a))
    assert (token(a) == token(b)) == (a == b)


def test_empty_name_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="empty"):
        token("")


def test_partitions_go_round_robin_over_members_by_id() -> None:
    assert owners(["b", "a"], 5) == ["a", "b", "a", "b", "a"]
    assert owners([], 2) == [None, None]
    assert wanted("b", ["a"], 4) == {1, 3}
    assert wanted("a", [], 3) == {0, 1, 2}  # alone: everything
    assert wanted("c", ["a", "b"], 2) == set()  # more members than partitions


@given(st.sets(st.text(min_size=1), min_size=1, max_size=6), st.integers(1, 16))
def test_every_partition_is_wanted_by_exactly_one_member(members: set[str], n: int) -> None:
    claims = [p for m in members for p in wanted(m, members, n)]
    assert sorted(claims) == list(range(n))


def test_leases_expire_unless_renewed() -> None:
    leases = Leases(3.0)
    leases.heard("a", 100.0)
    leases.heard("b", 100.0)
    leases.heard("b", 102.0)
    assert leases.live(103.0) == {"a", "b"}
    assert leases.live(103.5) == {"b"}  # a's lease ran out
    leases.heard("a", 104.0)  # back again
    leases.heard("a", 101.0)  # a late report does not move the lease back
    leases.left("b")
    assert leases.live(106.5) == {"a"}
    with pytest.raises(ConfigurationError):
        Leases(0)
