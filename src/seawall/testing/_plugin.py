"""seawall's pytest fixtures, and async tests of modules using seawall run on asyncio.

Registered by :mod:`seawall._pytest_plugin` when pytest-asyncio is installed
(``pip install 'seawall[testing]'``). With it, the README's test runs under a
plain ``pytest`` in a new project:

- an ``async def`` test runs on asyncio (as if marked ``@pytest.mark.asyncio``)
  when its module imports anything from seawall or it uses a ``seawall_``
  fixture, unless it is marked for another runner (``anyio``, ``trio``) already;
  other async tests are left to whatever the project configured;
- ``seawall_system``: ``system = await seawall_system(orders, kitchen)`` starts a
  :class:`~seawall.testing.TestSystem` of those services (keywords as for
  ``TestSystem``), stopped after the test, where its handler errors are raised;
- ``seawall_broker_dir``: a fresh, empty directory for an embedded broker
  (``System(orders, transport=f"embedded://{seawall_broker_dir}")``).

Async fixtures of the project's own need ``@pytest_asyncio.fixture``, or
``asyncio_mode = "auto"`` in its pytest configuration (which also runs every
async test on asyncio).
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import AsyncIterator, Awaitable, Generator
from pathlib import Path
from types import ModuleType
from typing import Any, Protocol

import pytest
import pytest_asyncio

from .._runtime.service import Service
from ._system import TestSystem

__all__ = ["StartTestSystem", "seawall_broker_dir", "seawall_system"]

_OTHER_RUNNERS = ("asyncio", "anyio", "trio")


class StartTestSystem(Protocol):
    """The ``seawall_system`` fixture: starts a :class:`TestSystem` of the services given."""

    def __call__(self, *services: Service, **options: Any) -> Awaitable[TestSystem]: ...


@pytest_asyncio.fixture
async def seawall_system() -> AsyncIterator[StartTestSystem]:
    """Start test systems during the test; each stops (and re-raises handler errors) after it."""
    async with contextlib.AsyncExitStack() as stack:

        async def start(*services: Service, **options: Any) -> TestSystem:
            return await stack.enter_async_context(TestSystem(*services, **options))

        yield start


@pytest.fixture
def seawall_broker_dir(tmp_path: Path) -> Path:
    """A fresh, empty directory for an embedded broker's files."""
    path = tmp_path / "seawall-broker"
    path.mkdir()
    return path


@pytest.hookimpl(wrapper=True, trylast=True)  # inside pytest-asyncio's wrapper: marked first
def pytest_pycollect_makeitem(
    collector: pytest.Module | pytest.Class, name: str, obj: object
) -> Generator[None, Any, Any]:
    """Mark the async tests that use seawall for asyncio, before pytest-asyncio looks."""
    result = yield
    items = result if isinstance(result, list) else [result]
    for item in items:
        if isinstance(item, pytest.Function) and _runs_on_asyncio(item):
            item.add_marker(pytest.mark.asyncio)
    return result


def _runs_on_asyncio(item: pytest.Function) -> bool:
    if not inspect.iscoroutinefunction(item.obj):
        return False
    if any(item.get_closest_marker(runner) for runner in _OTHER_RUNNERS):
        return False
    uses_fixture = any(name.startswith("seawall_") for name in item.fixturenames)
    return uses_fixture or _uses_seawall(item.module)


def _uses_seawall(module: ModuleType | None) -> bool:
    """Whether ``module`` imported seawall, or anything defined in it (a class, a service)."""
    if module is None:
        return False
    for value in vars(module).values():
        origin = value.__name__ if isinstance(value, ModuleType) else _module_of(value)
        if isinstance(origin, str) and (origin == "seawall" or origin.startswith("seawall.")):
            return True
    return False


def _module_of(value: object) -> object:
    try:
        return getattr(value, "__module__", None)  # an instance answers for its class
    except Exception:  # a proxy that fails on attribute access says nothing either way
        return None
