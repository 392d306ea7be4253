"""Broker adapters, one module each, chosen by URL with :func:`connect`."""

from __future__ import annotations

from typing import cast, get_args
from urllib.parse import parse_qs, urlsplit

from .._clock import Clock
from .._exceptions import ConfigurationError
from .._transport import Transport
from .embedded import EmbeddedTransport, SyncPolicy
from .memory import MemoryTransport

__all__ = ["EmbeddedTransport", "MemoryTransport", "connect"]


def connect(url: str, *, clock: Clock | None = None) -> Transport:
    """A transport for ``url``; only ``memory://`` ships in this release."""
    parts = urlsplit(url)
    scheme = parts.scheme
    if scheme == "memory":
        return MemoryTransport(clock=clock)
    if scheme == "embedded":
        return _embedded(url, parts.netloc + parts.path, parse_qs(parts.query), clock)
    raise ConfigurationError(
        f"no transport for URL {url!r} (scheme {scheme!r}); this release supports "
        "'memory://' and 'embedded://DIR'"
    )


def _embedded(url: str, path: str, query: dict[str, list[str]], clock: Clock | None) -> Transport:
    """``embedded://DIR?sync=always|batch|none&window=SECONDS``."""
    if not path:
        raise ConfigurationError(
            f"{url!r} names no directory; write embedded://./data or embedded:///abs/path"
        )
    sync = query.get("sync", ["batch"])[-1]
    if sync not in get_args(SyncPolicy):
        raise ConfigurationError(f"{url!r}: sync must be always, batch or none, not {sync!r}")
    try:
        window = float(query.get("window", ["0.002"])[-1])
    except ValueError:
        raise ConfigurationError(f"{url!r}: window must be a number of seconds") from None
    return EmbeddedTransport(path, sync=cast(SyncPolicy, sync), window=window, clock=clock)
