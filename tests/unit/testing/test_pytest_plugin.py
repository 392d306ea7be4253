"""seawall's pytest plugin in a project with no pytest configuration (pytest-asyncio strict)."""

from __future__ import annotations

import pytest

SERVICE = """
from seawall import Command, Document, Service

class Ping(Command, frozen=True):
    n: int

class Pong(Document, frozen=True):
    n: int

echo = Service("echo")

@echo.command
async def ping(cmd: Ping) -> Pong:
    return Pong(n=cmd.n)
"""

README_STYLE = """
from seawall.testing import TestSystem
from plugin_app import Ping, Pong, echo

async def test_request() -> None:
    async with TestSystem(echo) as system:
        pong = await system.context().request("echo", Ping(n=1), returns=Pong)
    assert pong == Pong(n=1)
"""

FIXTURES = """
from pathlib import Path
from seawall import System
from seawall.testing import StartTestSystem
from plugin_app import Ping, Pong, echo

async def test_factory(seawall_system: StartTestSystem) -> None:
    system = await seawall_system(echo)
    assert await system.context().request("echo", Ping(n=2), returns=Pong) == Pong(n=2)

async def test_broker_dir(seawall_broker_dir: Path) -> None:
    assert list(seawall_broker_dir.iterdir()) == []
    async with System(echo, transport=f"embedded://{seawall_broker_dir}") as system:
        assert await system.context().request("echo", Ping(n=3), returns=Pong) == Pong(n=3)
    assert list(seawall_broker_dir.iterdir())  # the broker kept its files there
"""

FAILING_HANDLER = """
from seawall import Command, Service

class Boom(Command, frozen=True):
    n: int

bad = Service("bad")

@bad.command
async def boom(cmd: Boom) -> None:
    raise ValueError("no")

async def test_handler_error_fails_the_test(seawall_system) -> None:
    system = await seawall_system(bad)
    await system.context().send("bad", Boom(n=1))
    await system.settle()
"""

NOT_SEAWALL = """
async def test_someone_elses() -> None:
    pass
"""


@pytest.fixture
def project(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makepyfile(plugin_app=SERVICE)
    return pytester


def test_seawall_tests_run_on_asyncio_with_fixtures_and_no_configuration(
    project: pytest.Pytester,
) -> None:
    project.makepyfile(
        test_readme=README_STYLE,
        test_fixtures=FIXTURES,
        test_failing=FAILING_HANDLER,
        test_other=NOT_SEAWALL,
    )
    result = project.runpytest_subprocess("-v")
    # the README-style test and both fixtures pass; a handler error fails its test at
    # teardown; the async test of a module that does not use seawall is pytest's to judge
    result.assert_outcomes(passed=4, errors=1, failed=1)
    result.stdout.fnmatch_lines(
        [
            "*test_failing.py::test_handler_error_fails_the_test PASSED*",
            "*test_failing.py::test_handler_error_fails_the_test ERROR*",
            "*test_fixtures.py::test_factory PASSED*",
            "*test_fixtures.py::test_broker_dir PASSED*",
            "*test_other.py::test_someone_elses FAILED*",
            "*test_readme.py::test_request PASSED*",
            "*ValueError: no*",
            "*async def functions are not natively supported*",
        ]
    )
    assert "is unset" not in result.stdout.str() + result.stderr.str()  # no loop-scope nagging


def test_the_plugin_can_be_turned_off(project: pytest.Pytester) -> None:
    project.makepyfile(test_readme=README_STYLE)
    project.runpytest_subprocess("-p", "no:seawall").assert_outcomes(failed=1)
