"""Service registry and discovery: who is running, where, and how loaded.

Every running system announces each of its service instances on a heartbeat,
over the backbone itself (no registry server): :class:`Announcement` is what it
says, on the channel :data:`REGISTRY_CHANNEL`. Readers (``seawall ps``, the
console, routing strategies, a request's "does this service exist" check) keep
the live instances and forget one after :data:`EXPIRY` seconds without a beat.
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

__all__ = [
    "EXPIRY",
    "HEARTBEAT",
    "REGISTRY_CHANNEL",
    "Announcement",
    "BreakerState",
    "Handles",
]
