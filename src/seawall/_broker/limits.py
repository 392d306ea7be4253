"""The embedded broker's bounds, apart from the engine.

A module of its own so that the transports' options (imported with ``seawall``)
read the defaults without loading the engine, its store and sqlite3.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["BrokerLimits"]


@dataclass(frozen=True, kw_only=True)
class BrokerLimits:
    """Bounds of a broker; every one has a clear error when reached."""

    max_message_bytes: int = 1 << 20
    publish_timeout: float | None = 30.0
    """How long a publisher waits for room in a full channel before ChannelFull."""
    default_partitions: int = 1
    """Partitions of a channel created by first use rather than declared."""
    tail: int = 4096
    """Entries per partition kept in memory for consumers that keep up; entries
    waiting to be written (at most the store's ``max_pending``) are held too."""
    retention_interval: float = 5.0
    """Seconds between two applications of the channels' ``max_age`` / ``max_bytes``."""
    dedupe_window: float = 120.0
    """Seconds a channel remembers the message ids (dedupe keys) of accepted publishes: a
    publish whose key it remembers is acknowledged without being stored again (0: off)."""
    dedupe_ids: int = 100_000
    """Ids a channel remembers at most: under a higher rate the window is shorter."""
