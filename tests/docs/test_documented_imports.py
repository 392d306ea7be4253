"""What README.md and docs/*.md tell users to import exists where they say, and is public.

Three kinds of reference are read from the pages:

- import statements: ``from seawall.x import A, B`` and ``import seawall.x``;
- dotted names anywhere: ``seawall.testing.TestSystem``, ``seawall.es``;
- names in inline code that seawall itself defines (``ConcurrencyError``): each
  must be listed in the ``__all__`` of a public module, or users could read about
  it but not import it without reaching into a private one.

One test per reference, named after it, so a failure says which.
"""

from __future__ import annotations

import importlib
import pkgutil
import re
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

import seawall

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

FROM_IMPORT = re.compile(r"^\s*from\s+(seawall(?:\.\w+)*)\s+import\s+(\([^)]*\)|[^\n]+)", re.M)
IMPORT = re.compile(r"^\s*import\s+(seawall(?:\.\w+)*)", re.M)
DOTTED = re.compile(r"(?<![\w./-])seawall(?:\.[A-Za-z_]\w*)+")
INLINE_CODE = re.compile(r"(?<!`)`([^`\n]+)`(?!`)")
CLASS_LIKE = re.compile(r"[A-Z]\w*[a-z]\w*")  # CamelCase: not ENV_VARS, MEMBERS nor T

NOT_PYTHON_NAMES = {
    "seawall.toml": "the CLI's configuration file",
    "seawall.Done": "the type name of a command's empty reply on the wire; requesters get None",
}
KNOWN_GAPS: dict[str, str] = {}
"""Documented names known not to be public yet, each with why (none today)."""


def _pages() -> Iterator[tuple[str, str]]:
    for page in PAGES:
        yield page.relative_to(ROOT).as_posix(), page.read_text()


def _public(path: str) -> bool:
    return not any(part.startswith("_") for part in path.split("."))


def _imports() -> list[Any]:
    found: dict[str, str] = {}
    for page, text in _pages():
        for module, names in FROM_IMPORT.findall(text):
            for name in names.strip("()").split(","):
                name = name.split("#")[0].split(" as ")[0].strip()
                if name:
                    found.setdefault(f"{module}.{name}", page)
        for module in IMPORT.findall(text):
            found.setdefault(module, page)
        for dotted in DOTTED.findall(text):
            if dotted not in NOT_PYTHON_NAMES:
                found.setdefault(dotted, page)
    return [pytest.param(path, page, id=path) for path, page in sorted(found.items())]


def _resolve(path: str) -> tuple[ModuleType, list[str]]:
    """The deepest module named by ``path`` and the attribute names that follow it."""
    parts = path.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            return importlib.import_module(".".join(parts[:cut])), parts[cut:]
        except ModuleNotFoundError:
            continue
    raise AssertionError(f"{path}: no such module")


@pytest.mark.parametrize(("path", "page"), _imports())
def test_a_documented_import_works_and_is_public(path: str, page: str) -> None:
    assert _public(path), f"{page} tells users to import the private {path}"
    module, attributes = _resolve(path)
    obj: object = module
    for attribute in attributes:
        assert hasattr(obj, attribute), f"{page}: {path} does not exist"
        if obj is module and hasattr(module, "__all__"):
            assert attribute in module.__all__, f"{page}: {path} exists but is not in __all__"
        obj = getattr(obj, attribute)


def _seawall_modules() -> Iterator[ModuleType]:
    yield seawall
    for info in pkgutil.walk_packages(seawall.__path__, "seawall."):
        if not info.name.endswith("__main__"):
            yield importlib.import_module(info.name)


def _defined_by_seawall() -> set[str]:
    """Names of the classes and functions seawall's own modules define."""
    return {
        name
        for module in _seawall_modules()
        for name, obj in vars(module).items()
        if getattr(obj, "__module__", None) == module.__name__ and callable(obj)
    }


def _exported() -> dict[str, str]:
    """Each name in a public module's ``__all__``, and one module that lists it."""
    return {
        name: module.__name__
        for module in _seawall_modules()
        if _public(module.__name__)
        for name in getattr(module, "__all__", ())
    }


def _documented_names() -> list[Any]:
    ours = _defined_by_seawall()
    found: dict[str, str] = {}
    for page, text in _pages():
        for code in INLINE_CODE.findall(text):
            name = CLASS_LIKE.match(code)
            if name and name.group() in ours:
                found.setdefault(name.group(), page)
    return [
        pytest.param(
            name,
            page,
            id=name,
            marks=[pytest.mark.xfail(reason=KNOWN_GAPS[name])] if name in KNOWN_GAPS else [],
        )
        for name, page in sorted(found.items())
    ]


@pytest.mark.parametrize(("name", "page"), _documented_names())
def test_a_documented_name_is_exported_by_a_public_module(name: str, page: str) -> None:
    assert name in _exported(), f"{page} names {name}, which no public module exports"


def test_the_pages_are_read() -> None:
    # guards the regular expressions: if they stopped matching, the tests above would
    # quietly shrink to nothing
    imports = {p.values[0] for p in _imports()}
    assert {"seawall.Service", "seawall.testing.TestSystem", "seawall.es.Aggregate"} <= imports
    names = {p.values[0] for p in _documented_names()}
    assert {"ConcurrencyError", "EventLoadError", "RetryPolicy", "SQLiteEventStore"} <= names
