"""Access rules over real sockets: consumer groups, private reply inboxes, and the runtime's
request/reply across processes through a server with clients configured.

The attacks are the ones reported in issue 13, item 10: a client allowed ``a.*`` joining
another service's group to take its messages, and a client allowed ``_inbox.*`` (as the
README's example grants) reading or forging another client's replies.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import msgspec
import pytest
import pytest_asyncio
from tests.unit.server.raw import round_trip

from seawall import Command, Document, PermissionDenied, Service, System
from seawall._server.acl import Client, ServerConfig
from seawall._server.server import BrokerServer
from seawall.testing._conformance import Inbox, make_message
from seawall.transports.memory import MemoryTransport
from seawall.transports.seawall import SeawallTransport

VICTIM = Client(
    name="victim-service", token="victim-token-0123456789", publish=("a.*",), subscribe=("a.*",)
)
SHOP = Client(
    name="shop",
    token="shop-token-0123456789",
    publish=("pricing", "_inbox.*"),
    subscribe=("_inbox.*",),
)
PRICING = Client(
    name="pricing",
    token="pricing-token-0123456789",
    publish=("pricing.*", "_inbox.*"),
    subscribe=("pricing", "_inbox.*"),  # every system reads its own inbox
)
SNOOP = Client(
    name="snoop",
    token="snoop-token-0123456789",
    publish=("a.*", "pricing", "_inbox.*"),
    subscribe=("a.*", "_inbox.*"),
    groups=("snoop", "check-*"),
)
CONFIG = ServerConfig(tokens=(VICTIM, SHOP, PRICING, SNOOP))
INBOX = "_inbox.0190c4d2-7e61-78c8-b55e-1a37d4774dfc"


@pytest_asyncio.fixture
async def server(backing: MemoryTransport) -> AsyncIterator[BrokerServer]:
    async with BrokerServer(backing, host="127.0.0.1", config=CONFIG) as server:
        yield server


@pytest_asyncio.fixture
async def connect(server: BrokerServer) -> AsyncIterator[dict[str, SeawallTransport]]:
    """One connection per configured client, by name."""
    url = f"seawall://127.0.0.1:{server.port}"
    links = {c.name: await SeawallTransport.connect(url, token=c.token) for c in CONFIG.tokens}
    yield links
    for link in links.values():
        await link.close()


async def test_a_client_cannot_join_another_service_s_group(
    connect: dict[str, SeawallTransport],
) -> None:
    victim, snoop = connect["victim-service"], connect["snoop"]
    own = await victim.subscribe("a.orders", group="victim-service")
    with pytest.raises(PermissionDenied, match="'snoop' may not join group 'victim-service'"):
        await snoop.subscribe("a.orders", group="victim-service")
    sent = [make_message(n) for n in range(5)]
    for message in sent:
        await victim.publish("a.orders", message)
    async with Inbox(own, patience=5.0) as inbox:
        got = await inbox.collect(5)  # every one: nobody else competes in the group
    assert sorted(d.message.id for d in got) == sorted(m.id for m in sent)
    await round_trip(snoop, "a.mine")  # the refused connection goes on


async def test_another_client_s_reply_inbox_cannot_be_read_or_written(
    connect: dict[str, SeawallTransport],
) -> None:
    shop, snoop = connect["shop"], connect["snoop"]
    await shop.subscribe(INBOX, group=INBOX)
    with pytest.raises(PermissionDenied, match="belongs to another client"):
        await snoop.subscribe(INBOX, group="snoop")
    with pytest.raises(PermissionDenied, match="may not publish to reply inbox"):
        await snoop.publish(INBOX, make_message())
    await round_trip(snoop, "a.mine")


async def test_an_inbox_stays_its_owner_s_across_a_reconnect(
    connect: dict[str, SeawallTransport],
) -> None:
    shop, snoop = connect["shop"], connect["snoop"]
    await shop.subscribe(INBOX, group=INBOX)
    shop.disconnect()  # the connection breaks; the server ends its subscription
    with pytest.raises(PermissionDenied, match="belongs to another client"):
        await snoop.subscribe(INBOX, group="snoop")
    again = await shop.subscribe(INBOX, group=INBOX)  # from its new connection
    await again.close()


async def test_a_reply_may_go_to_the_inbox_of_a_request_delivered_until_its_deadline(
    connect: dict[str, SeawallTransport],
) -> None:
    shop, pricing, snoop = connect["shop"], connect["pricing"], connect["snoop"]
    replies = await shop.subscribe(INBOX, group=INBOX)
    requests = await pricing.subscribe("pricing", group="pricing")
    deadline = datetime.now(UTC) + timedelta(seconds=30)
    request = msgspec.structs.replace(make_message(1), replyto=INBOX, deadline=deadline)
    await shop.publish("pricing", request)
    async with Inbox(requests, patience=5.0) as inbox:
        [delivered] = await inbox.collect(1)
    reply = make_message(2)
    await pricing.publish(INBOX, reply)  # it received a request naming that inbox
    async with Inbox(replies, patience=5.0) as inbox:
        [got] = await inbox.collect(1)
    assert got.message == reply
    # a client that forges the request itself gets no further: it never received it
    await snoop.publish("pricing", request)
    with pytest.raises(PermissionDenied, match="may not publish to reply inbox"):
        await snoop.publish(INBOX, reply)
    await requests.ack(delivered)


class Quote(Command, frozen=True):
    item: str


class Price(Document, frozen=True):
    cents: int


pricing_service = Service("pricing")


@pricing_service.command
async def quote(command: Quote) -> Price:
    return Price(cents=len(command.item))


async def test_the_runtime_s_request_and_reply_work_across_processes(
    server: BrokerServer,
) -> None:
    """Two systems, two connections, as two processes would: the reply reaches the inbox."""
    url = f"seawall://127.0.0.1:{server.port}"
    responder = System(pricing_service, transport=SeawallTransport(url, token=PRICING.token))
    requester = System(transport=SeawallTransport(url, token=SHOP.token))
    async with responder, requester:
        context = requester.context()
        for item in ("tea", "coffee"):
            price = await context.request("pricing", Quote(item=item), returns=Price, timeout=10)
            assert price == Price(cents=len(item))
        stopping = time.monotonic()
    # the broker refuses the responder its instance channel (pricing.@<instance>): its
    # routed-request dispatcher never ran, and the stop does not wait for it (it waited
    # out the drain's backstop, grace + 5 s, before)
    assert time.monotonic() - stopping < 5.0
    await responder.transport.close()
    await requester.transport.close()
