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

from typing import TYPE_CHECKING

from .. import _lazy
from .announcement import (
    EXPIRY,
    HEARTBEAT,
    REGISTRY_CHANNEL,
    Announcement,
    BreakerState,
    Handles,
)

if TYPE_CHECKING:
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

_LAZY = {
    **dict.fromkeys(["RETENTION", "Announcer", "Announces", "RegistryReader"], ".channel"),
    "Registry": ".registry",
    **dict.fromkeys(["Live", "Roster", "Verdict"], ".roster"),
    **dict.fromkeys(["ROUTES", "Route", "Router", "instance_channel"], ".routing"),
}
"""Loaded on first use: a system announces only on a shared broker, and ``import seawall``
needs no more of discovery than :class:`BreakerState` (the routing's hashlib, the channel's
reader and the roster's dataclasses were a twentieth of it)."""


__getattr__ = _lazy.loader(__name__, _LAZY, globals())
__dir__ = _lazy.exported(globals(), __all__)
