"""Direct requests (``ChannelSpec(requests="direct")``) over NATS and the broker server.

On a channel whose requests are direct a request travels to a live member
without being stored: over core NATS in a queue group, or handed from the
broker server's memory. What must hold: it is answered; a repeat with the same
id is answered from the responder's reply cache, not by its handler; nothing
is left in the channel's stream or log; with no responder the caller gets the
normal DeadlineExceeded.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import msgspec
import pytest
from tests.brokers import NATS, cleanup_streams, require, unique

from seawall import (
    ChannelSpec,
    Command,
    DeadlineExceeded,
    Document,
    Service,
    System,
    Transport,
)
from seawall._messages.envelope import RETRY_HEADER
from seawall._server.server import BrokerServer
from seawall._transport.assignment import token
from seawall.testing._conformance import Inbox
from seawall.transports.embedded import EmbeddedTransport
from seawall.transports.nats import NatsTransport
from seawall.transports.seawall import SeawallTransport

pytestmark = pytest.mark.integration


class Ask(Command, frozen=True):
    type_name = "direct.Ask"
    type_version = "1.0.0"

    n: int


class Answer(Document, frozen=True):
    type_name = "direct.Answer"
    type_version = "1.0.0"

    n: int


Stored = Callable[[str], Awaitable[int]]
"""How many messages a channel's stream or log holds."""


@contextlib.asynccontextmanager
async def _nats(tmp_path: Path) -> AsyncIterator[tuple[str, Stored]]:
    url = require(NATS)
    async with cleanup_streams() as doomed:
        probe = await NatsTransport.connect(url)

        async def stored(channel: str) -> int:
            doomed.add(f"SEAWALL_{token(channel)}")
            js = await probe.link()
            return int((await js.stream_info(f"SEAWALL_{token(channel)}")).state.messages)

        try:
            yield url, stored
        finally:
            await probe.close()


@contextlib.asynccontextmanager
async def _server(tmp_path: Path) -> AsyncIterator[tuple[str, Stored]]:
    backing = EmbeddedTransport(tmp_path / "data")

    async def stored(channel: str) -> int:
        broker = await backing.broker()
        return sum(log.end for log in broker._channels[channel].logs)

    try:
        async with BrokerServer(backing, host="127.0.0.1") as server:
            yield f"seawall://127.0.0.1:{server.port}", stored
    finally:
        await backing.close()


@pytest.fixture(params=[_nats, _server], ids=["nats", "seawall"])
async def broker(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[tuple[str, Stored]]:
    async with request.param(tmp_path) as made:
        yield made


def _connect(url: str) -> Transport:
    if url.startswith("nats://"):
        return NatsTransport(url)
    return SeawallTransport(url)


async def test_a_direct_request_is_answered_and_a_repeat_comes_from_the_reply_cache(
    broker: tuple[str, Stored],
) -> None:
    url, stored = broker
    name = unique("direct")
    runs: list[int] = []
    svc = Service(name, requests="direct")

    @svc.command
    async def double(ask: Ask) -> Answer:
        runs.append(ask.n)
        return Answer(n=ask.n * 2)

    requester = _connect(url)
    first_inbox, second_inbox = unique("_inbox.direct"), unique("_inbox.direct")
    async with System(svc, transport=url) as system:
        assert await system.context().request(name, Ask(n=21), returns=Answer) == Answer(n=42)
        # The same request twice, as a caller that got no answer in time sends it again
        # (same id, marked as a retry so no broker takes it for a repeated publish)
        # (to a second inbox here: a broker server drops a reply repeated to the same
        # inbox by its duplicate window, the caller having had it).
        deadline = (datetime.now(UTC) + timedelta(seconds=10)).timestamp()
        ask = system.node.envelope(Ask(n=5), source="test", deadline=deadline)
        answers = []
        for retry, inbox in enumerate((first_inbox, second_inbox)):
            await requester.declare(ChannelSpec(name=inbox, ephemeral=True))
            replies = await requester.subscribe(inbox, group=inbox)
            headers = {RETRY_HEADER: str(retry)} if retry else {}
            sent = msgspec.structs.replace(ask, replyto=inbox, headers=headers)
            await requester.publish(name, sent)
            async with Inbox(replies, patience=5.0) as reader:
                [answer] = await reader.collect(1)
            answers.append(answer.message)
            await replies.close()
        assert [a.correlationid for a in answers] == [ask.id, ask.id]
        assert answers[0].data == answers[1].data
        assert runs == [21, 5], "the repeat ran the handler again"
        assert await stored(name) == 0, "a direct request was stored"
    await requester.close()


async def test_a_direct_request_with_no_responder_times_out(
    broker: tuple[str, Stored],
) -> None:
    url, stored = broker
    name = unique("nobody")
    async with System(transport=url) as system:
        await system.transport.declare(ChannelSpec(name=name, requests="direct"))
        with pytest.raises(DeadlineExceeded):
            await system.context().request(name, Ask(n=1), returns=Answer, timeout=0.5)
        assert await stored(name) == 0
