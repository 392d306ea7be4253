"""The observability options of ``seawall run`` and ``seawall up``, checked by click.

Part of the edges layer (CLI): ``--log-level`` (one of :data:`~.logs.LEVELS`,
any case: anything else is a usage error naming the choices, never a
traceback), ``--log-format text|json`` and ``--metrics HOST:PORT``. Each also
reads its ``SEAWALL_…`` environment variable, as the CLI's other options do.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from typing import Any, TypeVar

import click

from .._exceptions import ConfigurationError
from .http import parse_listen
from .logs import FORMATS, LEVELS

__all__ = [
    "ListenType",
    "log_format_option",
    "log_level_option",
    "metrics_option",
    "require_prometheus",
]

F = TypeVar("F", bound=Callable[..., Any])


class ListenType(click.ParamType):  # type: ignore[type-arg]  # generic from click 8.3
    """``HOST:PORT``, checked (every option that takes an address to listen on)."""

    name = "HOST:PORT"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, tuple):
            return value
        try:
            return parse_listen(str(value))
        except ConfigurationError as exc:
            self.fail(str(exc), param, ctx)


def log_level_option(default: str) -> Callable[[F], F]:
    """``--log-level`` (``SEAWALL_LOG_LEVEL``), one of DEBUG, INFO, WARNING, ERROR, CRITICAL."""
    return click.option(
        "--log-level",
        envvar="SEAWALL_LOG_LEVEL",
        type=click.Choice(LEVELS, case_sensitive=False),
        default=default,
        show_default=True,
        help="How much to log.",
    )


def log_format_option(what: str) -> Callable[[F], F]:
    """``--log-format`` (``SEAWALL_LOG_FORMAT``): ``text`` or ``json``."""
    return click.option(
        "--log-format",
        envvar="SEAWALL_LOG_FORMAT",
        type=click.Choice(FORMATS),
        default="text",
        show_default=True,
        help=f"Log lines as text, or as JSON objects with each message's fields{what}.",
    )


def metrics_option(what: str) -> Callable[[F], F]:
    """``--metrics HOST:PORT`` (``SEAWALL_METRICS``): serve /metrics, /healthz and /readyz."""
    return click.option(
        "--metrics",
        envvar="SEAWALL_METRICS",
        type=ListenType(),
        default=None,
        help=f"Serve /metrics (Prometheus), /healthz and /readyz on HOST:PORT{what}.",
    )


def require_prometheus() -> None:
    """A usage error, before anything starts, when ``prometheus-client`` is missing."""
    if importlib.util.find_spec("prometheus_client") is None:
        raise click.UsageError(
            "--metrics needs prometheus-client: pip install 'seawall[prometheus]'"
        )
