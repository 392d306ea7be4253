"""Upcaster chains, without I/O: which step old data takes, where a chain ends, what is refused."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import msgspec
import pytest

from seawall import ConfigurationError, Event, UnknownVersion, Upcasters
from seawall.es import EventCodec, RecordedEvent


class TicketV1(Event, frozen=True):
    type_name = "kitchen.Ticket"
    type_version = "1.4.0"
    order: str
    at: datetime


class Ticket(Event, frozen=True):
    type_name = "kitchen.Ticket"
    type_version = "2.0.0"
    order: str
    at: datetime
    station: str


class Other(Event, frozen=True):
    type_name = "kitchen.Other"
    type_version = "2.0.0"


def tag(label: str) -> Any:
    """A step that records which one ran."""

    def step(fields: dict[str, Any]) -> dict[str, Any]:
        return {**fields, "station": label}

    step.__qualname__ = label
    return step


def chain(*steps: tuple[str, str]) -> Upcasters:
    upcasters = Upcasters()
    for source, target in steps:
        upcasters.add("kitchen.Ticket", source, target, tag(f"{source}->{target}"))
    return upcasters


def taken(upcasters: Upcasters, version: str, majors: set[str]) -> tuple[str, list[str]]:
    reached, steps = upcasters.path("kitchen.Ticket", version, majors)
    return reached, [step.__qualname__ for step in steps]


@pytest.mark.parametrize(
    ("version", "expected"),
    [
        ("1.0.0", ("2.0.0", ["1.0.0->2.0.0"])),
        ("1.2.0", ("2.0.0", ["1.2.0->2.0.0"])),  # its own step first
        ("1.3.5", ("2.0.0", ["1.2.0->2.0.0"])),  # else the nearest lower one of its major
        ("1.9.0-rc1", ("2.0.0", ["1.2.0->2.0.0"])),
        ("2.0.0", ("2.0.0", [])),  # already a major the reader takes
        ("2.7.1", ("2.7.1", [])),
    ],
)
def test_data_takes_its_own_step_or_the_nearest_lower_one_of_its_major(
    version: str, expected: tuple[str, list[str]]
) -> None:
    upcasters = chain(("1.0.0", "2.0.0"), ("1.2.0", "2.0.0"))
    assert taken(upcasters, version, {"2"}) == expected


def test_a_step_written_for_newer_data_never_reads_older() -> None:
    upcasters = chain(("1.2.0", "2.0.0"))
    with pytest.raises(UnknownVersion, match=r"no upcaster leads from version 1\.0\.0"):
        upcasters.path("kitchen.Ticket", "1.0.0", {"2"})


def test_a_chain_climbs_until_a_major_the_reader_takes() -> None:
    upcasters = chain(("1.0.0", "2.0.0"), ("2.0.0", "3.1.0"), ("3.0.0", "5.0.0"))
    assert taken(upcasters, "1.1.0", {"3", "5"}) == ("3.1.0", ["1.0.0->2.0.0", "2.0.0->3.1.0"])
    assert taken(upcasters, "1.1.0", {"5"})[1][-1] == "3.0.0->5.0.0"
    with pytest.raises(UnknownVersion) as caught:
        upcasters.path("kitchen.Ticket", "1.1.0", {"4"})
    assert str(caught.value) == (
        "no upcaster leads from version 5.0.0 of 'kitchen.Ticket' (the chain began at 1.1.0) "
        "to major version 4"
    )


def test_a_type_without_steps_or_a_version_that_is_not_semver_has_no_path() -> None:
    upcasters = chain(("1.0.0", "2.0.0"))
    with pytest.raises(UnknownVersion):
        upcasters.path("kitchen.Unknown", "1.0.0", {"2"})
    with pytest.raises(UnknownVersion):
        upcasters.path("kitchen.Ticket", "one", {"2"})


@pytest.mark.parametrize(
    ("source", "target", "message"),
    [
        ("1.0.0", "1.1.0", "must climb to a higher major"),
        ("2.0.0", "1.0.0", "must climb to a higher major"),
        ("1.0", "2.0.0", "'1.0' is not a semver version"),
        ("1.0.0", "v2", "'v2' is not a semver version"),
    ],
)
def test_a_step_must_climb_from_one_semver_major_to_a_higher(
    source: str, target: str, message: str
) -> None:
    with pytest.raises(ConfigurationError, match=message):
        Upcasters().add("kitchen.Ticket", source, target, tag("x"))


def test_one_step_per_version_but_the_same_step_may_come_twice() -> None:
    upcasters, step = Upcasters(), tag("first")
    upcasters.add("kitchen.Ticket", "1.0.0", "2.0.0", step)
    upcasters.add("kitchen.Ticket", "1.0.0", "2.0.0", step)  # e.g. a shared chain included again
    with pytest.raises(ConfigurationError, match=r"already has an upcaster .* \(first, to 2\.0\.0"):
        upcasters.add("kitchen.Ticket", "1.0.0", "2.0.0", tag("second"))
    other = Upcasters()
    other.add("kitchen.Ticket", "1.0.0", "3.0.0", step)
    with pytest.raises(ConfigurationError, match="already has an upcaster"):
        upcasters.include(other)


def test_include_takes_every_step_of_another_chain() -> None:
    mine, theirs = chain(("1.0.0", "2.0.0")), chain(("2.0.0", "3.0.0"))
    mine.include(theirs)
    mine.include(theirs)
    assert taken(mine, "1.0.0", {"3"})[1] == ["1.0.0->2.0.0", "2.0.0->3.0.0"]


def test_a_typed_upcaster_takes_every_version_of_its_parameters_major() -> None:
    upcasters = Upcasters()

    @upcasters.upcaster
    def to_v2(old: TicketV1) -> Ticket:
        return Ticket(order=old.order, at=old.at, station="grill")

    at = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    for version in ("1.0.0", "1.4.0", "1.9.9"):
        _, steps = upcasters.path("kitchen.Ticket", version, {"2"})
        fields = msgspec.json.decode(msgspec.json.encode(TicketV1(order="o", at=at)))
        [step] = steps
        assert msgspec.convert(step(fields), Ticket) == Ticket(order="o", at=at, station="grill")
    assert to_v2.__name__ == "to_v2"  # handed back unchanged


def bad_return(old: TicketV1) -> int:
    return 0


def two_params(old: TicketV1, extra: int) -> Ticket:
    raise NotImplementedError


def renames(old: TicketV1) -> Other:
    raise NotImplementedError


def same_major(old: Ticket) -> Ticket:
    return old


@pytest.mark.parametrize(
    ("fn", "message"),
    [
        (bad_return, "must take one payload class and return one"),
        (two_params, "must take one payload class and return one"),
        (renames, "turns 'kitchen.Ticket' into 'kitchen.Other'"),
        (same_major, "must climb to a higher major"),
    ],
)
def test_a_typed_upcaster_is_checked_when_registered(fn: Any, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        Upcasters().upcaster(fn)


def test_the_event_codec_reads_through_the_same_chain_and_may_share_it() -> None:
    shared = Upcasters()
    codec = EventCodec(Ticket, upcasters=shared)
    assert codec.upcasters is shared

    @codec.upcaster
    def to_v2(old: TicketV1) -> Ticket:
        return Ticket(order=old.order, at=old.at, station="wok")

    at = datetime(2026, 1, 2, tzinfo=UTC)
    data = msgspec.json.encode(TicketV1(order="o-1", at=at))
    record = RecordedEvent(3, "t-1", 1, "id", "kitchen.Ticket", "1.1.0", 0.0, data)
    assert codec.decode(record) == Ticket(order="o-1", at=at, station="wok")
    assert shared.path("kitchen.Ticket", "1.1.0", {"2"})[0] == "2.0.0"  # registered on both
