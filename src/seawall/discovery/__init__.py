"""Service registry and discovery: who is running, where, and how loaded.

Every running system announces each of its service instances on a heartbeat,
over the backbone itself (no registry server): :class:`Announcement` is what it
says, on the channel :data:`REGISTRY_CHANNEL`. Readers (``seawall ps``, the
console, routing strategies, a request's "does this service exist" check) keep
the live instances and forget one after :data:`EXPIRY` seconds without a beat.

* :mod:`.roster`: the live instances, fed announcements and ``now`` (sans-IO);
* :mod:`.routing`: the routing strategies, pure pickers over live instances;
* :mod:`.registry`: one process's roster and router, asked before a send;
* :mod:`.channel`: announcing on, and listening to, the registry channel (asyncio).
"""

from __future__ import annotations

from .announcement import (
    EXPIRY,
    HEARTBEAT,
    REGISTRY_CHANNEL,
    Announcement,
    BreakerState,
    Handles,
)
from .channel import RETENTION, Announcer, Announces, RegistryReader
from .registry import Registry
from .roster import Live, Roster, Verdict
from .routing import ROUTES, Route, Router, instance_channel

__all__ = [
    "EXPIRY",
    "HEARTBEAT",
    "REGISTRY_CHANNEL",
    "RETENTION",
    "ROUTES",
    "Announcement",
    "Announcer",
    "Announces",
    "BreakerState",
    "Handles",
    "Live",
    "RegistryReader",
    "Registry",
    "Roster",
    "Route",
    "Router",
    "Verdict",
    "instance_channel",
]
