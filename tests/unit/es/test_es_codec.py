"""Event and snapshot codec: upcaster chains, compatible minor versions, clear load
errors, custom types in snapshots; aggregate and snapshot-policy basics."""

from __future__ import annotations

import enum
import re
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import msgspec
import pytest
import pytest_asyncio

from seawall import ConfigurationError, Document, Event, EventLoadError
from seawall.es import (
    Aggregate,
    EventCodec,
    RecordedEvent,
    Repository,
    SnapshotPolicy,
    SnapshotRecord,
    SQLiteEventStore,
)


class RenamedV1(Event, frozen=True):
    type_name = "bank.Renamed"
    type_version = "1.0.0"
    name: str


class RenamedV3(Event, frozen=True):
    type_name = "bank.Renamed"
    type_version = "3.0.0"
    first: str
    last: str
    source: str
    note: str = ""


def codec_v3() -> EventCodec:
    codec = EventCodec(RenamedV3)

    @codec.upcaster("bank.Renamed", "1.0.0", "2.0.0")
    def split(fields: dict[str, Any]) -> dict[str, Any]:
        first, _, last = fields.pop("name").partition(" ")
        return {**fields, "first": first, "last": last}

    @codec.upcaster("bank.Renamed", "2.0.0", "3.0.0")
    def add_source(fields: dict[str, Any]) -> dict[str, Any]:
        return {**fields, "source": "upcast"}

    return codec


def recorded(new: Any, *, position: int = 7, stream: str = "acct-1") -> RecordedEvent:
    return RecordedEvent(position, stream, 1, new.id, new.type, new.type_version, 0.0, new.data)


@pytest_asyncio.fixture
async def store(tmp_path: Path) -> AsyncIterator[SQLiteEventStore]:
    async with await SQLiteEventStore.open(tmp_path / "e.db") as opened:
        yield opened


async def test_v1_upcast_through_v2_to_v3_and_stored_bytes_untouched(
    store: SQLiteEventStore,
) -> None:
    old = EventCodec(RenamedV1).encode(RenamedV1(name="Ada Lovelace"))
    await store.append("acct-1", [old], 0)
    [stored] = await store.read_stream("acct-1")
    assert codec_v3().decode(stored) == RenamedV3(first="Ada", last="Lovelace", source="upcast")
    [again] = await store.read_stream("acct-1")
    assert (again.type_version, again.data) == ("1.0.0", old.data)  # never rewritten


def test_current_version_decodes_without_upcasting() -> None:
    event = RenamedV3(first="a", last="b", source="now")
    assert codec_v3().decode(recorded(codec_v3().encode(event))) == event


def test_minor_version_without_upcaster_uses_field_defaults() -> None:
    older = msgspec.json.encode({"first": "a", "last": "b", "source": "x"})
    record = RecordedEvent(1, "s", 1, "id", "bank.Renamed", "3.0.0-rc1", 0.0, older)
    assert codec_v3().decode(record).note == ""  # type: ignore[attr-defined]


def test_missing_upcaster_names_type_version_stream_and_position() -> None:
    record = RecordedEvent(42, "acct-9", 3, "id", "bank.Renamed", "0.9.0", 0.0, b"{}")
    with pytest.raises(
        EventLoadError, match=re.escape("no upcaster leads from version 0.9.0")
    ) as caught:
        codec_v3().decode(record)
    error = caught.value
    assert (error.type_name, error.version, error.stream, error.position) == (
        "bank.Renamed",
        "0.9.0",
        "acct-9",
        42,
    )
    assert "acct-9" in str(error)
    assert "position 42" in str(error)


def test_unknown_type_and_corrupt_payload_are_load_errors() -> None:
    unknown = RecordedEvent(1, "s", 1, "id", "gone.Type", "1.0.0", 0.0, b"{}")
    with pytest.raises(
        EventLoadError, match=re.escape("'gone.Type' version 1.0.0 from stream 's'")
    ):
        codec_v3().decode(unknown)
    corrupt = RecordedEvent(5, "s", 1, "id", "bank.Renamed", "3.0.0", 0.0, b'{"first": 1')
    with pytest.raises(EventLoadError, match="does not decode") as caught:
        codec_v3().decode(corrupt)
    assert caught.value.position == 5
    wrong = RecordedEvent(6, "s", 1, "id", "bank.Renamed", "3.0.0", 0.0, b'{"first": 1}')
    with pytest.raises(EventLoadError, match="position 6"):
        codec_v3().decode(wrong)


def test_registrations_must_be_unambiguous() -> None:
    codec = codec_v3()
    with pytest.raises(ConfigurationError, match="declared by both"):
        codec.register(RenamedV1)
    with pytest.raises(ConfigurationError, match="already has an upcaster"):
        codec.upcaster("bank.Renamed", "1.0.0", "2.0.0")(lambda fields: fields)


class Tier(enum.Enum):
    GOLD = "gold"
    BASIC = "basic"


class Address(msgspec.Struct, frozen=True):
    city: str


class Opened(Event, frozen=True):
    type_name = "bank.Opened"
    owner: uuid.UUID
    at: datetime
    limit: Decimal
    tier: Tier
    address: Address


class StateV1(Document, frozen=True):
    type_name = "bank.AccountState"
    limit: Decimal


class StateV2(Document, frozen=True):
    type_name = "bank.AccountState"
    type_version = "2.0.0"
    owner: uuid.UUID
    at: datetime
    limit: Decimal
    tier: Tier
    address: Address
    opened_events: int


class Account(Aggregate):
    snapshot_type = StateV2

    def __init__(self, id: str) -> None:
        super().__init__(id)
        self.state: Opened | None = None
        self.replayed = 0

    def apply(self, event: Any) -> None:
        assert isinstance(event, Opened)
        self.state = event
        self.replayed += 1

    def snapshot(self) -> StateV2:
        s = self.state
        assert s is not None
        return StateV2(
            owner=s.owner, at=s.at, limit=s.limit, tier=s.tier, address=s.address,
            opened_events=self.replayed,
        )  # fmt: skip

    def restore(self, snapshot: Any) -> None:
        assert isinstance(snapshot, StateV2)
        self.state = Opened(
            owner=snapshot.owner, at=snapshot.at, limit=snapshot.limit, tier=snapshot.tier,
            address=snapshot.address,
        )  # fmt: skip


OPENED = Opened(
    owner=uuid.UUID(int=7),
    at=datetime(2026, 3, 1, 12, 30, tzinfo=UTC),
    limit=Decimal("250.75"),
    tier=Tier.GOLD,
    address=Address(city="Lyon"),
)


async def test_snapshot_round_trips_custom_types(store: SQLiteEventStore) -> None:
    repo = Repository(store, EventCodec(Opened, StateV2), snapshots=SnapshotPolicy(every=2))
    account = Account("1")
    account.record(OPENED, OPENED)
    await repo.save(account)
    loaded = await repo.load(Account, "1")
    assert loaded.replayed == 0  # from the snapshot alone
    assert loaded.state == OPENED
    assert isinstance(loaded.state.limit, Decimal)
    assert loaded.state.tier is Tier.GOLD


async def test_old_snapshot_is_upcast_on_load(store: SQLiteEventStore) -> None:
    codec = EventCodec(Opened, StateV2)

    @codec.upcaster("bank.AccountState", "1.0.0", "2.0.0")
    def fill(fields: dict[str, Any]) -> dict[str, Any]:
        return {
            **fields, "owner": str(uuid.UUID(int=1)), "at": "2020-01-01T00:00:00Z",
            "tier": "basic", "address": {"city": "?"}, "opened_events": 0,
        }  # fmt: skip

    await store.append("Account-2", [codec.encode(OPENED)], 0)
    old = EventCodec(StateV1).encode_snapshot("Account-2", 1, StateV1(limit=Decimal("9.5")))
    await store.save_snapshot(old)
    loaded = await Repository(store, codec, snapshots=SnapshotPolicy()).load(Account, "2")
    assert loaded.state is not None
    assert (loaded.state.limit, loaded.state.tier, loaded.version) == (
        Decimal("9.5"),
        Tier.BASIC,
        1,
    )


async def test_corrupt_snapshot_names_stream_and_version(store: SQLiteEventStore) -> None:
    await store.append("Account-3", [EventCodec(Opened).encode(OPENED)], 0)
    await store.save_snapshot(SnapshotRecord("Account-3", 1, "bank.AccountState", "2.0.0", b"{"))
    repo = Repository(store, EventCodec(Opened, StateV2), snapshots=SnapshotPolicy())
    with pytest.raises(EventLoadError, match="'Account-3' at position 1"):
        await repo.load(Account, "3")


def test_aggregate_basics() -> None:
    assert Account.stream_for("x") == "Account-x"

    class Bare(Aggregate):
        category = "bare"

    bare = Bare("1")
    assert bare.stream == "bare-1"
    with pytest.raises(NotImplementedError, match="apply"):
        bare.record(OPENED)
    account = Account("1")
    account.record(OPENED)
    assert (account.version, account.pending) == (1, (OPENED,))


def test_snapshot_policy() -> None:
    policy = SnapshotPolicy(every=10)
    assert policy.due(9, 10)
    assert policy.due(5, 25)
    assert not policy.due(10, 19)
    with pytest.raises(ConfigurationError, match="every"):
        SnapshotPolicy(every=0)
