"""The sans-IO tables behind private reply inboxes: owners and reply grants, fed ``now``."""

from __future__ import annotations

from seawall._server.inboxes import (
    CLOCK_SLACK,
    NO_DEADLINE,
    InboxOwners,
    ReplyGrants,
)
from seawall._transport import is_reply_inbox, reply_inbox

T = 1_000.0


def test_inboxes_are_the_runtime_s_channel_names() -> None:
    assert is_reply_inbox(reply_inbox("0190c4d2-7e61-78c8-b55e-1a37d4774dfc"))
    assert not is_reply_inbox("inbox.a")
    assert not is_reply_inbox("orders._inbox.a")


def test_the_first_subscriber_owns_an_inbox_and_others_are_refused() -> None:
    owners = InboxOwners()
    assert owners.owner("_inbox.a", T) is None
    assert owners.claim("_inbox.a", "shop", T)
    assert owners.claim("_inbox.a", "shop", T)  # a second connection of the same client
    assert not owners.claim("_inbox.a", "snoop", T)
    assert owners.owner("_inbox.a", T) == "shop"


def test_an_owner_keeps_its_inbox_a_while_after_its_last_subscription() -> None:
    owners = InboxOwners(hold=30.0)
    owners.claim("_inbox.a", "shop", T)
    owners.claim("_inbox.a", "shop", T)
    owners.release("_inbox.a", "shop", T)
    owners.release("_inbox.a", "shop", T + 1)  # the last one: held from here
    assert not owners.claim("_inbox.a", "snoop", T + 30.0)
    assert owners.claim("_inbox.a", "shop", T + 30.0)  # back from a new connection
    owners.release("_inbox.a", "shop", T + 31)
    assert owners.owner("_inbox.a", T + 61.0) is None
    assert owners.claim("_inbox.a", "snoop", T + 61.0)


def test_a_release_by_another_client_changes_nothing() -> None:
    owners = InboxOwners()
    owners.claim("_inbox.a", "shop", T)
    owners.release("_inbox.a", "snoop", T)
    owners.release("_inbox.b", "snoop", T)
    assert owners.owner("_inbox.a", T + 10_000) == "shop"


def test_held_inboxes_are_bounded_oldest_first() -> None:
    owners = InboxOwners(hold=1_000.0, max_held=3)
    for n in range(5):
        owners.claim(f"_inbox.{n}", "shop", T)
        owners.release(f"_inbox.{n}", "shop", T + n)
    assert len(owners) == 3
    assert [owners.owner(f"_inbox.{n}", T + 5) for n in range(5)] == [
        None,
        None,
        "shop",
        "shop",
        "shop",
    ]


def test_a_grant_lasts_until_the_deadline_plus_the_slack() -> None:
    grants = ReplyGrants()
    grants.grant("_inbox.a", T + 5.0, T)
    assert grants.allows("_inbox.a", T + 5.0 + CLOCK_SLACK - 0.01)
    assert not grants.allows("_inbox.a", T + 5.0 + CLOCK_SLACK)
    assert len(grants) == 0  # an expired grant is forgotten
    assert not grants.allows("_inbox.b", T)


def test_a_grant_without_deadline_lasts_a_minute_and_redelivery_extends_it() -> None:
    grants = ReplyGrants()
    grants.grant("_inbox.a", None, T)
    grants.grant("_inbox.a", T + 1.0, T)  # an earlier end never shortens a grant
    end = T + NO_DEADLINE + CLOCK_SLACK
    assert grants.allows("_inbox.a", end - 0.01)
    grants.grant("_inbox.a", None, T + 30.0)
    assert grants.allows("_inbox.a", end + 29.0)


def test_grants_are_bounded_least_recently_granted_first() -> None:
    grants = ReplyGrants(limit=2)
    grants.grant("_inbox.a", None, T)
    grants.grant("_inbox.b", None, T)
    grants.grant("_inbox.a", None, T + 1)  # a is now the most recent
    grants.grant("_inbox.c", None, T + 2)
    assert len(grants) == 2
    assert [grants.allows(f"_inbox.{x}", T + 3) for x in "abc"] == [True, False, True]
