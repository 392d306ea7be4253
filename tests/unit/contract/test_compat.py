"""``contract check``: each breaking change is caught without a major bump; additions pass."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar

from click.testing import CliRunner

from seawall import Command, Context, Service
from seawall._cli import main
from seawall.contract import compare, export


def _contract(cls: type[Command]) -> dict[str, Any]:
    service = Service("shop")

    async def place(cmd: cls, ctx: Context) -> None:  # type: ignore[valid-type]
        return None

    place.__annotations__ = {"cmd": cls, "ctx": Context, "return": None}
    service.command(place)
    return export(service)


class V1(Command, frozen=True):
    type_name: ClassVar[str] = "shop.PlaceOrder"
    type_version: ClassVar[str] = "1.0.0"
    order_id: str
    items: list[str]
    note: str = ""


OLD = _contract(V1)


def _kinds(new: type[Command]) -> list[tuple[str, str]]:
    return [(c.kind, c.field) for c in compare(OLD, _contract(new)) if c.breaking]


def test_an_unchanged_contract_has_no_change() -> None:
    assert compare(OLD, _contract(V1)) == []


def test_a_removed_field_is_breaking() -> None:
    class Removed(Command, frozen=True):
        type_name: ClassVar[str] = "shop.PlaceOrder"
        type_version: ClassVar[str] = "1.1.0"
        order_id: str
        note: str = ""

    assert _kinds(Removed) == [("removed", "items")]


def test_a_renamed_field_is_breaking() -> None:
    class Renamed(Command, frozen=True):
        type_name: ClassVar[str] = "shop.PlaceOrder"
        type_version: ClassVar[str] = "1.1.0"
        order_id: str
        lines: list[str]
        note: str = ""

    changes = [c for c in compare(OLD, _contract(Renamed)) if c.breaking]
    assert [(c.kind, c.field) for c in changes] == [("renamed", "items")]
    assert "'lines'" in changes[0].detail


def test_a_new_required_field_is_breaking() -> None:
    class Required(Command, frozen=True):
        type_name: ClassVar[str] = "shop.PlaceOrder"
        type_version: ClassVar[str] = "1.1.0"
        order_id: str
        items: list[str]
        card: str
        note: str = ""

    assert _kinds(Required) == [("required", "card")]


def test_an_optional_field_made_required_is_breaking() -> None:
    class Stricter(Command, frozen=True):
        type_name: ClassVar[str] = "shop.PlaceOrder"
        type_version: ClassVar[str] = "1.1.0"
        order_id: str
        items: list[str]
        note: str

    assert _kinds(Stricter) == [("required", "note")]


def test_a_changed_type_is_breaking_also_inside_a_list() -> None:
    class Retyped(Command, frozen=True):
        type_name: ClassVar[str] = "shop.PlaceOrder"
        type_version: ClassVar[str] = "1.1.0"
        order_id: int
        items: list[int]
        note: str = ""

    assert _kinds(Retyped) == [("type", "order_id"), ("type", "items[]")]


def test_an_added_optional_field_passes() -> None:
    class Grown(Command, frozen=True):
        type_name: ClassVar[str] = "shop.PlaceOrder"
        type_version: ClassVar[str] = "1.1.0"
        order_id: str
        items: list[str]
        note: str = ""
        coupon: str | None = None

    changes = compare(OLD, _contract(Grown))
    assert [(c.kind, c.field, c.breaking) for c in changes] == [("added", "coupon", False)]


def test_an_added_field_without_a_version_bump_gets_a_hint_not_a_failure() -> None:
    class Grown(Command, frozen=True):
        type_name: ClassVar[str] = "shop.PlaceOrder"
        type_version: ClassVar[str] = "1.0.0"
        order_id: str
        items: list[str]
        note: str = ""
        coupon: str = ""

    changes = compare(OLD, _contract(Grown))
    assert [c.kind for c in changes] == ["added", "version"]
    assert not any(c.breaking for c in changes)


def test_a_major_bump_allows_a_breaking_change() -> None:
    class V2(Command, frozen=True):
        type_name: ClassVar[str] = "shop.PlaceOrder"
        type_version: ClassVar[str] = "2.0.0"
        order_id: int
        lines: list[str]

    changes = compare(OLD, _contract(V2))
    assert [(c.kind, c.breaking) for c in changes] == [("major-bump", False)]


def test_a_removed_message_is_breaking() -> None:
    class Other(Command, frozen=True):
        type_name: ClassVar[str] = "shop.Other"
        order_id: str

    assert _kinds(Other) == [("message-removed", "")]


def _check(tmp_path: Path, new: type[Command]) -> tuple[int, str]:
    (tmp_path / "old.json").write_text(json.dumps(OLD))
    (tmp_path / "new.json").write_text(json.dumps(_contract(new)))
    args = ["contract", "check", str(tmp_path / "old.json"), str(tmp_path / "new.json")]
    result = CliRunner().invoke(main, args)
    return result.exit_code, result.output


def test_cli_check_fails_on_a_breaking_change_and_passes_an_addition(tmp_path: Path) -> None:
    class Removed(Command, frozen=True):
        type_name: ClassVar[str] = "shop.PlaceOrder"
        type_version: ClassVar[str] = "1.1.0"
        order_id: str

    class Grown(Command, frozen=True):
        type_name: ClassVar[str] = "shop.PlaceOrder"
        type_version: ClassVar[str] = "1.1.0"
        order_id: str
        items: list[str]
        note: str = ""
        coupon: str = ""

    code, output = _check(tmp_path, Removed)
    assert code == 1
    assert "BREAKING: shop.PlaceOrder.v1 field 'items': removed" in output
    assert "2 breaking change(s)" in output
    code, output = _check(tmp_path, Grown)
    assert code == 0, output
    assert "compatible: 1 change(s), none breaking" in output


def test_cli_check_reads_a_target_and_names_a_bad_argument(tmp_path: Path) -> None:
    target = "tests.unit.contract.shop:system"
    result = CliRunner().invoke(main, ["contract", "check", target, target])
    assert result.exit_code == 0, result.output
    result = CliRunner().invoke(main, ["contract", "check", "nope.json", target])
    assert result.exit_code == 1
    assert "neither a file nor a MODULE:ATTR target" in result.output
