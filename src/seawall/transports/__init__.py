"""Broker adapters, one module each, chosen by URL with :func:`connect`."""

from __future__ import annotations

from urllib.parse import urlsplit

from .._clock import Clock
from .._exceptions import ConfigurationError
from .._transport import Transport
from .memory import MemoryTransport
from .seawall import SCHEMES as SEAWALL_SCHEMES
from .seawall import SeawallTransport

__all__ = ["MemoryTransport", "SeawallTransport", "connect"]


def connect(url: str, *, clock: Clock | None = None) -> Transport:
    """A transport for ``url``: ``memory://`` or a broker server (``seawall://host:port``).

    A ``seawall://`` transport connects on its first call.
    """
    scheme = urlsplit(url).scheme
    if scheme == "memory":
        return MemoryTransport(clock=clock)
    if scheme in SEAWALL_SCHEMES:
        return SeawallTransport(url, clock=clock)
    where = url.split("@")[-1]  # a URL's user part may hold a token: keep it out of errors
    raise ConfigurationError(
        f"no transport for URL {where!r} (scheme {scheme!r}); this release supports "
        "'memory://' and 'seawall://host:port'"
    )
