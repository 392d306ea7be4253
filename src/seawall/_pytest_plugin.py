"""The pytest plugin seawall installs (entry point ``pytest11``, named ``seawall``).

It stays inert unless pytest-asyncio is there (``pip install 'seawall[testing]'``),
so that a project with pytest but without that extra still starts pytest. With
it, it registers :mod:`seawall.testing._plugin`: the fixtures, and the rule that
runs the async tests of modules using seawall on asyncio, with no configuration.

A project that left pytest-asyncio's ``asyncio_default_fixture_loop_scope``
unset is not told so at every run: its async fixtures keep the loop of their own
scope (a function fixture: the test's loop), which is what the warning is about.
Set the option to make the choice explicit; ``-p no:seawall`` turns all of this off.
"""

from __future__ import annotations

import warnings

import pytest

__all__ = ["pytest_configure"]

_LOOP_SCOPE_UNSET = 'The configuration option "asyncio_default_fixture_loop_scope" is unset'


@pytest.hookimpl(tryfirst=True)  # before pytest-asyncio's own, which warns
def pytest_configure(config: pytest.Config) -> None:
    """Register the fixtures and the asyncio rule when pytest-asyncio is active."""
    if not config.pluginmanager.has_plugin("asyncio"):
        return
    from .testing import _plugin

    config.pluginmanager.register(_plugin, "seawall.testing")
    if not config.getini("asyncio_default_fixture_loop_scope"):
        warnings.filterwarnings(
            "ignore", message=_LOOP_SCOPE_UNSET, category=pytest.PytestDeprecationWarning
        )
