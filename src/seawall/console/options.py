"""The console's command-line options, shared by ``seawall console`` and ``seawall up``.

Part of the edges layer: ``--console HOST:PORT`` (``seawall up``) or ``--listen
HOST:PORT`` (``seawall console``) says where to serve the page,
``--operator-token`` (``SEAWALL_CONSOLE_TOKEN``) the token without which the page
is read-only. :func:`require_web` makes a missing web stack a usage error that
says what to install, before anything starts.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from typing import Any, TypeVar

import click

from ..observability.options import ListenType

__all__ = ["ListenType", "require_web", "token_option"]

F = TypeVar("F", bound=Callable[..., Any])


def token_option(fn: F) -> F:
    """``--operator-token`` (``SEAWALL_CONSOLE_TOKEN``): without it the page is read-only."""
    return click.option(
        "--operator-token",
        envvar="SEAWALL_CONSOLE_TOKEN",
        default=None,
        help="Token the console's page needs to redrive or purge dead letters "
        "(without one the page is read-only). Prefer SEAWALL_CONSOLE_TOKEN: a command "
        "line is visible to every user of the machine.",
    )(fn)


def require_web() -> None:
    """A usage error when the console's web stack is not installed; else import it now.

    Imported up front, before ``seawall up`` starts its services, so that the console's
    imports do not compete with their start for the CPU.
    """
    if any(importlib.util.find_spec(name) is None for name in ("starlette", "uvicorn")):
        raise click.UsageError("the console needs its web stack: pip install 'seawall[console]'")
    importlib.import_module("seawall.console.web")
