"""What one service instance says about itself on every heartbeat.

The registry, ``seawall ps``, the console's topology and the routing strategies
all read this one shape; it is a versioned seawall payload like any other, so
it evolves by the schema rules (fields only added, with defaults, within a
major version).

An instance announces every :data:`HEARTBEAT` seconds and says ``leaving=True``
once when it stops cleanly; a reader forgets an instance after :data:`EXPIRY`
seconds without a beat (a SIGKILLed instance is gone from ``seawall ps`` within
that bound).
"""

from __future__ import annotations

from typing import Literal

import msgspec

from .._messages.payload import Document

__all__ = [
    "EXPIRY",
    "HEARTBEAT",
    "REGISTRY_CHANNEL",
    "STARTUP_GRACE",
    "Announcement",
    "BreakerState",
    "Handles",
]

REGISTRY_CHANNEL = "seawall.registry"
"""The publish-subscribe channel every instance announces itself on."""

HEARTBEAT = 1.0
"""Seconds between two announcements of one instance."""

EXPIRY = 2.5
"""Seconds without an announcement after which an instance counts as gone."""

STARTUP_GRACE = 10.0
"""Seconds a roster listens before it believes that a service was never announced, even
once it has replayed the history: the services of a system that starts for the first
time come up together, and a caller must not refuse a peer that is still starting."""


class Handles(msgspec.Struct, frozen=True, kw_only=True):
    """One subscription of the instance: the channel, its consumer group, and the
    message types (``name@version``) its handlers take there."""

    channel: str
    group: str
    types: tuple[str, ...] = ()


class BreakerState(msgspec.Struct, frozen=True, kw_only=True):
    """A circuit breaker the instance holds as a caller, and its state."""

    target: str
    state: Literal["closed", "open", "half-open"]
    failure_rate: float = 0.0


class Announcement(Document, frozen=True):
    """One heartbeat of one service instance."""

    type_name = "seawall.registry.Announcement"
    type_version = "1.0.0"

    service: str
    instance: str
    """Unique per running instance (a uuid7), stable for its life."""
    system: str = ""
    """The name of the system (``seawall.toml``'s name, or the module) it runs in."""
    host: str = ""
    pid: int = 0
    started_at: float = 0.0
    """Unix time the instance started."""
    seawall_version: str = ""
    handles: tuple[Handles, ...] = ()
    sends_to: tuple[str, ...] = ()
    """The channels it sends to, sorted: the targets its service declares
    (``Service(depends_on=...)``) and the channels its contexts have sent, published,
    requested or gathered to since it started (the logical target, not the instance
    channel a routed call went to; at most 64). Not what code outside a context
    publishes straight through the transport (an outbox relay, a saga runner).
    ``seawall ps`` and the console draw these as the arrows of who calls whom; a
    heartbeat from before this field reads as ``()``."""
    inbox: str = ""
    """This instance's own channel, for routing strategies that pick an instance."""
    in_flight: int = 0
    handled: int = 0
    failed: int = 0
    dead_lettered: int = 0
    handled_per_s: float = 0.0
    handler_p50_ms: float = 0.0
    handler_p99_ms: float = 0.0
    restarts: int = 0
    healthy: bool = True
    breakers: tuple[BreakerState, ...] = ()
    leaving: bool = False
    """Said once on a clean stop, so readers drop the instance at once."""
