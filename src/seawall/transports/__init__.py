"""Broker adapters, one module each, chosen by URL with :func:`connect`."""

from __future__ import annotations

from urllib.parse import urlsplit

from .._clock import Clock
from .._exceptions import ConfigurationError
from .._transport import Transport
from .memory import MemoryTransport

__all__ = ["MemoryTransport", "connect"]


def connect(url: str, *, clock: Clock | None = None) -> Transport:
    """A transport for ``url``: ``memory://`` or ``nats://host:port`` (connects on first use)."""
    scheme = urlsplit(url).scheme
    if scheme == "memory":
        return MemoryTransport(clock=clock)
    if scheme == "nats":
        from .nats import NatsTransport  # needs the nats extra: imported only when asked for

        return NatsTransport(url, clock=clock)
    raise ConfigurationError(
        f"no transport for URL {url!r} (scheme {scheme!r}); this release supports 'memory://' "
        "and 'nats://'"
    )
