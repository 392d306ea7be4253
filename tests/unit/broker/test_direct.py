"""Direct requests in the embedded broker: handed from memory, never appended to a log."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import msgspec
import pytest

from seawall import ChannelFull, ChannelSpec, ConfigurationError
from seawall._broker.direct import DIRECT, DirectQueue
from seawall._broker.log import Taken
from seawall._messages.envelope import Message
from seawall.testing._conformance import Inbox, ids, make_message
from seawall.transports.embedded import EmbeddedTransport


def _request(n: int) -> Message:
    deadline = datetime.now(UTC) + timedelta(seconds=30)
    return msgspec.structs.replace(make_message(n), replyto="_inbox.me", deadline=deadline)


def _taken(queue: DirectQueue[str], member: int, now: float) -> Taken[str]:
    taken = queue.take(member, now)
    assert taken is not None
    return taken


def test_a_queue_hands_out_in_order_holds_back_a_nack_and_returns_what_a_leaver_held() -> None:
    queue = DirectQueue[str](bound=3)
    assert [queue.offer(entry) for entry in "abcd"] == [True, True, True, False]  # bound 3
    a, b = _taken(queue, 1, 0.0), _taken(queue, 2, 0.0)
    assert (a.partition, a.entry, a.attempt) == (DIRECT, "a", 1)
    assert not queue.ack(2, a.offset), "member 2 does not hold it"
    assert queue.nack(1, a.offset, not_before=5.0)
    queue.leave(2)  # b back at the head, before c
    assert [_taken(queue, 3, 1.0).entry for _ in range(2)] == [b.entry, "c"]
    assert queue.take(3, now=1.0) is None
    assert queue.next_retry() == 5.0
    again = _taken(queue, 3, 5.0)
    assert (again.entry, again.attempt) == ("a", 2)
    assert queue.ack(3, again.offset)


def test_a_channel_says_how_its_requests_travel() -> None:
    assert ChannelSpec(name="c").requests == "stored"
    with pytest.raises(ConfigurationError, match="'stored' or 'direct'"):
        ChannelSpec(name="c", requests="later")  # type: ignore[arg-type]


async def test_direct_requests_skip_the_log_and_other_messages_do_not(tmp_path: Path) -> None:
    transport = EmbeddedTransport(tmp_path / "data")
    await transport.declare(ChannelSpec(name="quotes", requests="direct"))
    await transport.publish("quotes", _request(0))  # nobody listens: dropped
    one = await transport.subscribe("quotes", group="pricing", prefetch=1)
    two = await transport.subscribe("quotes", group="pricing", prefetch=1)
    audit = await transport.subscribe("quotes", group="audit")
    requests = [_request(n) for n in (1, 2, 3)]
    for request in requests:
        await transport.publish("quotes", request)
    plain = make_message(4)
    await transport.publish("quotes", plain)  # not a request: stored
    broker = await transport.broker()
    assert [log.end for log in broker._channels["quotes"].logs] == [1]
    async with Inbox(one, patience=2.0) as first, Inbox(two, patience=2.0) as second:
        [a] = await first.collect(1)
        [b] = await second.collect(1)
        assert await first.quiet(0.05) == [], "past its prefetch"
        assert [a.message.id, b.message.id] == ids(requests[:2])  # before the log's message
        await one.nack(a)
        [again] = await first.collect(1)
        assert (again.message.id, again.attempt) == (a.message.id, 2)
        await two.close()  # b goes back to the group, for the member left
        await one.ack(again)
        got = []
        for _ in range(3):
            [delivery] = await first.collect(1)
            got.append(delivery)
            await one.ack(delivery)
    assert [(d.message.id, d.attempt) for d in got] == [
        (b.message.id, 2),  # handed out once before, to the member gone
        (requests[2].id, 1),
        (plain.id, 1),
    ]
    async with Inbox(audit, patience=2.0) as everything:
        assert sorted(ids(await everything.collect(4))) == sorted([*ids(requests), plain.id])
    await transport.close()


async def test_a_full_direct_queue_refuses_a_request(tmp_path: Path) -> None:
    transport = EmbeddedTransport(None)
    await transport.declare(ChannelSpec(name="quotes", requests="direct", max_messages=2))
    await transport.subscribe("quotes", group="pricing", prefetch=1)
    await transport.publish("quotes", _request(1))
    await transport.publish("quotes", _request(2))
    with pytest.raises(ChannelFull, match="direct requests"):
        await transport.publish("quotes", _request(3))
    await transport.close()
