"""Broker adapters, one module each, chosen by URL with :func:`connect`."""

from __future__ import annotations

from urllib.parse import urlsplit

from .._clock import Clock
from .._exceptions import ConfigurationError
from .._transport import Transport
from .memory import MemoryTransport

__all__ = ["MemoryTransport", "connect"]


def connect(url: str, *, clock: Clock | None = None) -> Transport:
    """A transport for ``url``; only ``memory://`` ships in this release."""
    scheme = urlsplit(url).scheme
    if scheme == "memory":
        return MemoryTransport(clock=clock)
    raise ConfigurationError(
        f"no transport for URL {url!r} (scheme {scheme!r}); this release supports 'memory://'"
    )
