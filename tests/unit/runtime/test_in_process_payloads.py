"""memory:// by default: messages kept as objects, the sender's payload handed over when safe.

The test system stays strict (every message encoded and decoded, as a broker would).
"""

from __future__ import annotations

import asyncio
import enum
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated, Literal

import msgspec
import pytest

from seawall import Command, Document, Event, MemoryTransport, MessageTooLarge, Service, System
from seawall._messages.sharing import shareable
from seawall.testing import TestSystem
from seawall.transports import MemoryOptions


class Colour(enum.Enum):
    RED = "red"


class Point(msgspec.Struct, frozen=True):
    x: int
    y: int


class Reading(Event, frozen=True):
    sensor: str
    seq: int
    value: float


class Batch(Event, frozen=True):
    readings: list[int]


class Wide(Event, frozen=True):
    """Every kind of field a shared payload may have."""

    text: str
    count: int | None
    ratio: float
    blob: bytes
    at: datetime
    ident: uuid.UUID
    amount: Decimal
    colour: Colour
    mode: Literal["a", "b"]
    many: tuple[int, ...]
    pair: tuple[int, str]
    tags: frozenset[str]
    point: Point


class Positive(Event, frozen=True):
    n: Annotated[int, msgspec.Meta(ge=0)]


class Loose(msgspec.Struct):  # not frozen
    x: int


class Nested(Event, frozen=True):
    inner: Loose


class Tree(Event, frozen=True):
    children: tuple[Tree, ...] = ()


def test_a_class_is_shareable_only_when_immutable_all_the_way_down() -> None:
    assert shareable(Reading)
    assert shareable(Wide)
    assert shareable(Tree)  # recursive, of immutable parts
    assert not shareable(Batch)  # a list field
    assert not shareable(Nested)  # a struct that is not frozen
    assert not shareable(Positive)  # a constraint only decoding checks


def test_memory_keeps_objects_by_default_and_the_url_can_ask_for_frames() -> None:
    assert not MemoryTransport().options.serialize
    assert MemoryOptions.resolve(None, url="memory://?serialize=true")[0].serialize


async def _first(system: System, payload: Event, got: asyncio.Future[Event]) -> Event:
    async with system:
        await system.context("producer").publish(payload, channel="readings")
        return await asyncio.wait_for(got, 5)


def _catcher() -> tuple[Service, asyncio.Future[Event]]:
    got: asyncio.Future[Event] = asyncio.get_running_loop().create_future()
    svc = Service("catcher")

    @svc.subscribe("readings")
    async def on(payload: Reading) -> None:
        if not got.done():
            got.set_result(payload)

    return svc, got


async def test_an_immutable_payload_reaches_the_handler_as_the_senders_object() -> None:
    svc, got = _catcher()
    sent = Reading(sensor="boiler", seq=1, value=71.25)
    received = await _first(System(svc), sent, got)  # the default transport: memory://
    assert received is sent


async def test_a_payload_with_a_list_reaches_the_handler_as_a_copy() -> None:
    got: asyncio.Future[Batch] = asyncio.get_running_loop().create_future()
    svc = Service("catcher")

    @svc.subscribe("readings")
    async def on(batch: Batch) -> None:
        batch.readings.append(99)  # the handler's own copy
        got.set_result(batch)

    sent = Batch(readings=[1, 2])
    async with System(svc, transport=MemoryTransport()) as system:
        await system.context("producer").publish(sent, channel="readings")
        received = await asyncio.wait_for(got, 5)
    assert received is not sent
    assert received.readings == [1, 2, 99]
    assert sent.readings == [1, 2]


async def test_frames_decode_a_copy_even_of_an_immutable_payload() -> None:
    svc, got = _catcher()
    sent = Reading(sensor="boiler", seq=1, value=71.25)
    received = await _first(System(svc, transport=MemoryTransport(serialize=True)), sent, got)
    assert received == sent
    assert received is not sent


async def test_the_size_limit_holds_for_messages_kept_as_objects() -> None:
    transport = MemoryTransport(max_message_bytes=300)
    async with System(transport=transport) as system:
        ctx = system.context("producer")
        await ctx.publish(Reading(sensor="s", seq=1, value=1.0), channel="readings")
        with pytest.raises(MessageTooLarge, match=r"over the 300-byte limit of channel 'readings'"):
            await ctx.publish(Reading(sensor="s" * 300, seq=2, value=1.0), channel="readings")
        # the text counts as its UTF-8 bytes: 60 three-byte characters are 180 bytes
        with pytest.raises(MessageTooLarge):
            await ctx.publish(Reading(sensor="€" * 60, seq=3, value=1.0), channel="readings")


async def test_the_test_system_stays_strict_about_what_a_broker_would_refuse() -> None:
    got: list[Reading] = []
    svc = Service("catcher")

    @svc.subscribe("readings")
    async def on(reading: Reading) -> None:
        got.append(reading)

    wrong = Reading(sensor="s", seq="not a number", value=1.0)  # type: ignore[arg-type]
    async with TestSystem(svc, raise_handler_errors=False) as test:
        assert test.memory.options.serialize
        await test.context("producer").publish(wrong, channel="readings")
        await test.settle()
        assert got == []  # it did not decode as a Reading: dead-lettered, never handled
        assert len(test.dead_letters("catcher")) == 1
    # kept as an object, the very same message reaches the handler as the sender built it
    svc2, caught = _catcher()
    assert await _first(System(svc2), wrong, caught) is wrong


async def test_an_envelope_published_later_is_decoded() -> None:
    """The handover pairs a publish with the envelope just built: an older one decodes."""
    transport = MemoryTransport()
    svc, got = _catcher()
    async with System(svc, transport=transport) as system:
        node = system.node
        first = Reading(sensor="a", seq=1, value=1.0)
        message = node.envelope(first, source="producer")
        node.envelope(Reading(sensor="b", seq=2, value=2.0), source="producer")  # not sent
        await transport.publish("readings", message)
        received = await asyncio.wait_for(got, 5)
    assert received == first
    assert received is not first


def test_wide_payload_round_trips_equal() -> None:
    """What sharing hands over equals what decoding would give, for every kind of field."""
    wide = Wide(
        text="t",
        count=None,
        ratio=0.5,
        blob=b"\x00",
        at=datetime(2026, 1, 1, tzinfo=UTC),
        ident=uuid.UUID(int=7),
        amount=Decimal("1.10"),
        colour=Colour.RED,
        mode="a",
        many=(1, 2),
        pair=(1, "x"),
        tags=frozenset({"a"}),
        point=Point(x=1, y=2),
    )
    assert msgspec.json.decode(msgspec.json.encode(wide), type=Wide) == wide


class Ask(Command, frozen=True):
    n: int


class AskList(Command, frozen=True):
    n: int


class Answer(Document, frozen=True):
    n: int


class Answers(Document, frozen=True):
    ns: list[int]


async def test_a_reply_answered_in_process_is_the_responders_object_when_immutable() -> None:
    made: list[Document] = []
    svc = Service("answerer")

    @svc.command
    async def ask(cmd: Ask) -> Answer:
        made.append(Answer(n=cmd.n))
        return made[-1]

    @svc.command
    async def ask_list(cmd: AskList) -> Answers:
        made.append(Answers(ns=[cmd.n]))
        return made[-1]

    async with System(svc) as system:
        ctx = system.context("client")
        answer = await ctx.request("answerer", Ask(n=1), returns=Answer, timeout=5)
        assert answer is made[0]
        answers = await ctx.request("answerer", AskList(n=2), returns=Answers, timeout=5)
        assert answers == made[1]
        assert answers is not made[1]  # a list inside: the requester gets its own copy
