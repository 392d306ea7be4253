"""Broker adapters, one module each, chosen by URL with :func:`connect`."""

from __future__ import annotations

from typing import cast, get_args
from urllib.parse import parse_qs, urlsplit

from .._clock import Clock
from .._exceptions import ConfigurationError
from .._transport import Transport
from .embedded import EmbeddedTransport, SyncPolicy
from .memory import MemoryTransport
from .seawall import SCHEMES as SEAWALL_SCHEMES
from .seawall import SeawallTransport

__all__ = ["EmbeddedTransport", "MemoryTransport", "SeawallTransport", "connect"]


def connect(url: str, *, clock: Clock | None = None) -> Transport:
    """A transport for ``url``: ``memory://``, ``embedded://DIR``, ``seawall://host:port``,
    ``nats://host:port``, ``amqp://user:password@host:port/vhost`` (``amqps://`` for TLS) or
    ``redis://host:port/db`` (``rediss://`` for TLS).

    An embedded broker opens, and a broker client connects, on first use.
    """
    parts = urlsplit(url)
    scheme = parts.scheme
    if scheme == "memory":
        return MemoryTransport(clock=clock)
    if scheme == "embedded":
        return _embedded(url, parts.netloc + parts.path, parse_qs(parts.query), clock)
    if scheme in SEAWALL_SCHEMES:
        return SeawallTransport(url, clock=clock)
    if scheme == "nats":
        from .nats import NatsTransport  # needs the nats extra: imported only when asked for

        return NatsTransport(url, clock=clock)
    if scheme in ("amqp", "amqps"):
        from .rabbitmq import RabbitMQTransport  # needs the rabbitmq extra

        return RabbitMQTransport(url, clock=clock)
    if scheme in ("redis", "rediss"):
        from .redis import RedisTransport  # needs the redis extra: imported only when asked for

        return RedisTransport(url, clock=clock)
    where = url.split("@")[-1]  # a URL's user part may hold a token: keep it out of errors
    raise ConfigurationError(
        f"no transport for URL {where!r} (scheme {scheme!r}); this release supports "
        "'memory://', 'embedded://DIR', 'seawall://host:port', 'nats://host:port', "
        "'amqp://host:port' and 'redis://host:port/db'"
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
