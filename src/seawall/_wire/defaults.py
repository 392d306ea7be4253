"""Protocol defaults that configuration reads without loading the protocol itself.

``seawall.transports``' options are imported with ``seawall``; the framing and its
message structs (:mod:`.protocol`) load only when a ``seawall://`` link or server is made.
"""

from __future__ import annotations

__all__ = ["DEFAULT_HEARTBEAT"]

DEFAULT_HEARTBEAT = 10.0
"""Seconds between heartbeats of an idle ``seawall://`` connection."""
