"""The embedded broker's duplicate window: a publish whose dedupe key the channel stored
within ``dedupe_window`` seconds is acknowledged without being stored again; the window
expires, is bounded, survives a restart, and keys dead letters and requests retried on
purpose apart from the plain publish of the same id."""

from __future__ import annotations

from pathlib import Path

import pytest
from msgspec.structs import replace

from seawall import Message, VirtualClock
from seawall._broker.store import ChannelLayout, SeenId, Store, WriteBatch
from seawall._messages.envelope import DLQ_REASON, REDRIVE_OF, RETRY_HEADER
from seawall._transport.dedupe import dedupe_key
from seawall.testing._conformance import Inbox, make_message
from seawall.transports import EmbeddedOptions
from seawall.transports.embedded import EmbeddedTransport


async def _stored(transport: EmbeddedTransport, channel: str = "orders") -> list[Message]:
    """Every message the channel holds, in order (read by a new group, all acked)."""
    sub = await transport.subscribe(channel, group="audit", prefetch=64)
    async with Inbox(sub, patience=2.0) as inbox:
        got = await inbox.quiet(0.1)
        for delivery in got:
            await sub.ack(delivery)
    await sub.close()
    return [delivery.message for delivery in got]


def _ids(messages: list[Message]) -> list[str]:
    return [m.id for m in messages]


@pytest.mark.parametrize("durable", [False, True], ids=["memory", "store"])
async def test_a_repeated_publish_is_acknowledged_and_stored_once(
    tmp_path: Path, durable: bool
) -> None:
    transport = EmbeddedTransport(tmp_path if durable else None)
    first, other = make_message(1), make_message(2)
    for message in (first, first, other, first):
        await transport.publish("orders", message)
    assert _ids(await _stored(transport)) == [first.id, other.id]
    assert (await transport.broker()).duplicates == 2
    await transport.close()


async def test_a_repeat_after_the_window_is_stored_again(tmp_path: Path) -> None:
    clock = VirtualClock()
    transport = EmbeddedTransport(tmp_path, clock=clock, dedupe_window=10)
    message = make_message(1)
    await transport.publish("orders", message)
    clock.advance(9.5)
    await transport.publish("orders", message)  # within the window: dropped
    clock.advance(1.0)
    await transport.publish("orders", message)  # 10.5 s after it was stored: a new one
    assert _ids(await _stored(transport)) == [message.id, message.id]
    await transport.close()


async def test_the_window_survives_a_restart_and_expires_after_it(tmp_path: Path) -> None:
    clock = VirtualClock()
    message, late = make_message(1), make_message(2)
    transport = EmbeddedTransport(tmp_path, clock=clock, dedupe_window=10)
    await transport.publish("orders", message)
    clock.advance(6)
    await transport.publish("orders", late)
    await transport.close()  # its answers lost: the publisher will try again

    again = EmbeddedTransport(tmp_path, clock=clock, dedupe_window=10)
    await again.publish("orders", message)
    await again.publish("orders", late)
    assert (await again.broker()).duplicates == 2
    await again.close()

    clock.advance(6)  # message is 12 s old now, late 6 s
    third = EmbeddedTransport(tmp_path, clock=clock, dedupe_window=10)
    await third.publish("orders", message)
    await third.publish("orders", late)
    assert _ids(await _stored(third)) == [message.id, late.id, message.id]
    await third.close()


async def test_a_dead_letter_or_a_retried_request_of_the_same_id_is_not_dropped() -> None:
    transport = EmbeddedTransport(None)
    plain = make_message(1)
    dead = replace(plain, headers={DLQ_REASON: "handler failed"})
    other_dead = replace(plain, headers={DLQ_REASON: "expired"})
    retried = replace(plain, headers={RETRY_HEADER: "1"})
    retried_again = replace(plain, headers={RETRY_HEADER: "2"})
    for message in (plain, dead, dead, other_dead, retried, retried, retried_again, plain):
        await transport.publish("orders", message)
    stored = await _stored(transport)
    assert [m.headers for m in stored] == [
        {},
        {DLQ_REASON: "handler failed"},
        {DLQ_REASON: "expired"},
        {RETRY_HEADER: "1"},
        {RETRY_HEADER: "2"},
    ]
    assert (await transport.broker()).duplicates == 3
    await transport.close()


async def test_a_zero_window_turns_deduplication_off(tmp_path: Path) -> None:
    transport = EmbeddedTransport(tmp_path, options=EmbeddedOptions(dedupe_window=0))
    message = make_message(1)
    await transport.publish("orders", message)
    await transport.publish("orders", message)
    assert _ids(await _stored(transport)) == [message.id, message.id]
    await transport.close()


async def test_the_window_holds_at_most_dedupe_ids_per_channel() -> None:
    transport = EmbeddedTransport(None, dedupe_ids=3)
    messages = [make_message(i) for i in range(4)]
    for message in messages:
        await transport.publish("orders", message)
    await transport.publish("orders", messages[3])  # still remembered: dropped
    await transport.publish("orders", messages[0])  # pushed out by the fourth: stored
    assert _ids(await _stored(transport)) == [*_ids(messages), messages[0].id]
    await transport.close()


async def test_a_deleted_channel_forgets_its_window(tmp_path: Path) -> None:
    transport = EmbeddedTransport(tmp_path)
    message = make_message(1)
    await transport.publish("orders", message)
    await transport.delete("orders")
    await transport.publish("orders", message)
    await transport.close()
    again = EmbeddedTransport(tmp_path)
    await again.publish("orders", message)  # the new channel's window, from the store
    assert _ids(await _stored(again)) == [message.id]
    await again.close()


def test_the_store_forgets_ids_from_the_oldest(tmp_path: Path) -> None:
    with Store.open(tmp_path) as store:
        declare = WriteBatch()
        declare.declare("orders", _layout())
        store.write(declare)
        for i in range(5):  # one commit each: the store keeps a row per commit
            batch = WriteBatch()
            batch.append("orders", 0, i, float(i), b"x", dedupe=f"id{i}")
            store.write(batch)
        forget = WriteBatch()
        forget.forget_ids(2.5)
        store.write(forget)
        assert store.recover(ids=True).ids == [
            SeenId("orders", "id3", 3.0),
            SeenId("orders", "id4", 4.0),
        ]
        assert store.recover().ids == []  # only read when asked for
        everything = WriteBatch()
        everything.forget_ids(float("inf"))
        store.write(everything)
        assert store.recover(ids=True).ids == []


def _layout() -> ChannelLayout:
    return ChannelLayout(partitions=1, max_messages=100)


def test_the_dedupe_key_is_the_id_unless_published_again_on_purpose() -> None:
    plain = make_message(1)
    assert dedupe_key(plain) == plain.id
    retried = replace(plain, headers={RETRY_HEADER: "2"})
    assert dedupe_key(retried) == f"{plain.id}.retry.2"
    dead = replace(plain, headers={DLQ_REASON: "failed"})
    assert dedupe_key(dead).startswith(f"{plain.id}.dlq.")
    assert dedupe_key(dead) == dedupe_key(replace(dead))
    assert dedupe_key(dead) != dedupe_key(replace(dead, data=b"other"))
    redriven = replace(plain, headers={REDRIVE_OF: "orders.dlq/7"})
    assert dedupe_key(redriven) == f"{plain.id}.redrive.orders.dlq/7"  # once per dead letter
    assert dedupe_key(redriven) != dedupe_key(replace(plain, headers={REDRIVE_OF: "orders.dlq/8"}))
