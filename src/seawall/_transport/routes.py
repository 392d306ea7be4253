"""Routing strategy names and instance channels: shared by discovery and call policies.

A caller may send a request to one chosen instance of a service instead of the
service's shared channel; each instance reads a channel of its own
(:func:`instance_channel`). :data:`Route` names the strategies that choose
(:mod:`seawall.discovery.routing` implements them); call policies
(:mod:`seawall.resilience`) name one as a target's default. Both sit above this
module and beside each other, so the names live here, once.
"""

from __future__ import annotations

from typing import Literal, get_args

from .._exceptions import ConfigurationError

__all__ = ["ROUTES", "Route", "check_route", "instance_channel", "service_of"]

Route = Literal[
    "shared",
    "round-robin",
    "least-outstanding",
    "lowest-latency",
    "local-first",
    "sticky",
    "broadcast",
]
"""How a caller chooses the instance that takes its message."""

ROUTES: tuple[str, ...] = get_args(Route)

_INSTANCE = ".@"


def instance_channel(service: str, instance: str) -> str:
    """The channel only ``instance`` of ``service`` reads (besides the shared one)."""
    return f"{service}{_INSTANCE}{instance}"


def service_of(channel: str) -> str | None:
    """The service whose instance channel ``channel`` is; None for any other channel."""
    service, sep, instance = channel.rpartition(_INSTANCE)
    return service if sep and service and instance else None


def check_route(route: object, where: str = "") -> Route:
    """``route`` if it names a strategy; a clear error (naming ``where``) otherwise."""
    if not isinstance(route, str) or route not in ROUTES:
        place = f"{where}: " if where else ""
        raise ConfigurationError(
            f"{place}unknown route {route!r}; choose one of {', '.join(ROUTES)} "
            "(or leave it out for the shared channel)"
        )
    return route  # type: ignore[return-value]  # checked just above
