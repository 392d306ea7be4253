"""Shared test settings, and the run's check that it left nothing on the shared servers."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from tests import leftovers
from tests.brokers import RUN, USED

pytest_plugins = ["pytester"]  # seawall's own pytest plugin is tested in fresh projects


@pytest.fixture(scope="session", autouse=True)
def _leaves_nothing_on_shared_servers() -> Iterator[None]:
    """After the last test: nothing this run made is left on a server it used.

    What is found is deleted, then the run fails naming it. Under CI a server that
    could not be looked at fails the run too; elsewhere it is only reported.
    """
    yield
    if not USED:
        return
    found, unknown = leftovers.find(USED)
    if found:
        leftovers.delete(found)
    problems = [f"{server.name}: {kind} {name}" for server, kind, name in found]
    if unknown and os.environ.get("CI", "").lower() == "true":
        problems += [f"could not look: {why}" for why in unknown]
    if problems:
        pytest.fail(
            f"this test run (marker {RUN}) left these on the shared servers (now deleted); "
            "a test that makes something there must delete it:\n  " + "\n  ".join(problems),
            pytrace=False,
        )
