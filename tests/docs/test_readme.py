"""The README's code runs as shown: its first examples are the files of examples/quickstart/."""

from __future__ import annotations

import ast
import importlib
import re
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
QUICKSTART = ROOT / "examples" / "quickstart"


def _blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def _statements(code: str) -> list[str]:
    return [ast.dump(node) for node in ast.parse(code).body]


def _bodies(code: str) -> list[list[str]]:
    """Every statement list of ``code``: the module's and each function's."""
    tree = ast.parse(code)
    bodies = [tree.body]
    bodies += [
        n.body for n in ast.walk(tree) if isinstance(n, ast.AsyncFunctionDef | ast.FunctionDef)
    ]
    return [[ast.dump(node) for node in body] for body in bodies]


def _contains(body: list[str], part: list[str]) -> bool:
    return any(body[i : i + len(part)] == part for i in range(len(body) - len(part) + 1))


@pytest.fixture
def quickstart(monkeypatch: pytest.MonkeyPatch) -> dict[str, ModuleType]:
    """The quickstart's modules, imported as their directory's own (``from shop import …``)."""
    monkeypatch.syspath_prepend(str(QUICKSTART))
    return {name: importlib.import_module(name) for name in ("shop", "client", "test_shop")}


def test_first_screen_shows_the_two_commands_then_a_short_service() -> None:
    text = README.read_text()
    first_screen = "\n".join(text.splitlines()[:12])
    assert "make demo" in first_screen
    assert "make test" in first_screen
    service = _blocks()[0]
    assert len(service.strip().splitlines()) <= 20


@pytest.mark.parametrize(("block", "file"), [(0, "shop.py"), (1, "client.py"), (2, "test_shop.py")])
def test_the_readme_examples_are_the_quickstart_files(block: int, file: str) -> None:
    shown = _statements(_blocks()[block])
    bodies = _bodies((QUICKSTART / file).read_text())
    assert any(_contains(body, shown) for body in bodies), f"README block {block} is not {file}"


async def test_the_quickstart_client_and_test_run(
    quickstart: dict[str, ModuleType], capsys: pytest.CaptureFixture[str]
) -> None:
    await quickstart["client"].main()
    assert capsys.readouterr().out == "receipt for order o-1\n"
    await quickstart["test_shop"].test_place_order()
