"""What one connection may do: channel patterns, group patterns, private reply inboxes.

Sans-IO: :class:`Rights` objects are fed messages and a virtual clock; the same
rules over real sockets are in ``test_server.py``.
"""

from __future__ import annotations

from datetime import UTC, datetime

import msgspec
import pytest

from seawall import PermissionDenied
from seawall._clock import VirtualClock
from seawall._messages.envelope import Message
from seawall._server.acl import Client
from seawall._server.inboxes import CLOCK_SLACK, InboxOwners
from seawall._server.rights import Rights
from seawall.testing._conformance import make_message

SHOP = Client(
    name="shop",
    token="shop-token-0123456789",
    publish=("orders", "_inbox.*"),
    subscribe=("_inbox.*",),
)
ORDERS = Client(
    name="orders",
    token="orders-token-0123456789",
    publish=("_inbox.*",),
    subscribe=("orders", "a.*"),
)
SNOOP = Client(
    name="snoop",
    token="snoop-token-0123456789",
    publish=("_inbox.*", "a.*"),
    subscribe=("_inbox.*", "a.*"),
    groups=("snoop", "snoop-*"),
)
INBOX = "_inbox.0190c4d2-7e61-78c8-b55e-1a37d4774dfc"


@pytest.fixture
def clock() -> VirtualClock:
    return VirtualClock()


@pytest.fixture
def owners() -> InboxOwners:
    return InboxOwners()


def request(clock: VirtualClock, timeout: float) -> Message:
    """A request naming the inbox as replyto, due ``timeout`` seconds from now."""
    deadline = datetime.fromtimestamp(clock.time() + timeout, UTC)
    return msgspec.structs.replace(make_message(), replyto=INBOX, deadline=deadline)


def test_a_client_joins_its_own_group_by_default_and_no_other() -> None:
    rights = Rights(ORDERS, InboxOwners(), VirtualClock())
    rights.subscribing("orders", "orders")
    with pytest.raises(PermissionDenied) as info:
        rights.subscribing("a.orders", "victim-service")
    assert str(info.value) == (
        "client 'orders' may not join group 'victim-service' (on channel 'a.orders'): its "
        "groups patterns ['orders'] do not match it; add a pattern to the client's groups in "
        "the broker's config"
    )


def test_group_patterns_are_globs() -> None:
    rights = Rights(SNOOP, InboxOwners(), VirtualClock())
    rights.subscribing("a.x", "snoop-eu")
    with pytest.raises(PermissionDenied, match=r"may not join group 'snoop\.eu'"):
        rights.subscribing("a.x", "snoop.eu")


def test_the_channel_right_comes_before_the_group() -> None:
    rights = Rights(ORDERS, InboxOwners(), VirtualClock())
    with pytest.raises(PermissionDenied, match="may not subscribe to channel 'billing'"):
        rights.subscribing("billing", "orders")


def test_an_open_server_allows_everything_and_tracks_nothing(owners: InboxOwners) -> None:
    rights = Rights(None, owners, VirtualClock())
    rights.subscribing(INBOX, "anything")
    rights.check_publish(INBOX)
    rights.check_declare("whatever")
    assert len(owners) == 0


def test_an_inbox_is_its_first_subscriber_s(clock: VirtualClock, owners: InboxOwners) -> None:
    shop, snoop = Rights(SHOP, owners, clock), Rights(SNOOP, owners, clock)
    shop.check_declare(INBOX)
    shop.subscribing(INBOX, INBOX)  # the runtime's group: the inbox name, no groups pattern
    for attempt in (lambda: snoop.subscribing(INBOX, "snoop"), lambda: snoop.check_declare(INBOX)):
        with pytest.raises(PermissionDenied, match="belongs to another client"):
            attempt()
    with pytest.raises(PermissionDenied, match="may not publish to reply inbox"):
        snoop.check_publish(INBOX)
    shop.check_publish(INBOX)  # its owner may


def test_a_reply_goes_only_to_the_inbox_of_a_request_delivered(
    clock: VirtualClock, owners: InboxOwners
) -> None:
    Rights(SHOP, owners, clock).subscribing(INBOX, INBOX)
    orders, snoop = Rights(ORDERS, owners, clock), Rights(SNOOP, owners, clock)
    orders.delivered(request(clock, timeout=5.0))
    orders.check_publish(INBOX)
    with pytest.raises(PermissionDenied, match="no message delivered on this connection"):
        snoop.check_publish(INBOX)
    clock.advance(5.0 + CLOCK_SLACK)
    with pytest.raises(PermissionDenied, match="deadline has passed"):
        orders.check_publish(INBOX)


def test_an_inbox_comes_back_to_its_owner_after_a_reconnect(
    clock: VirtualClock, owners: InboxOwners
) -> None:
    first = Rights(SHOP, owners, clock)
    first.subscribing(INBOX, INBOX)
    first.unsubscribed(INBOX)  # the connection broke
    with pytest.raises(PermissionDenied):
        Rights(SNOOP, owners, clock).subscribing(INBOX, "snoop")
    Rights(SHOP, owners, clock).subscribing(INBOX, INBOX)  # its new connection
