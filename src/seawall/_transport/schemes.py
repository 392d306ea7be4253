"""``connect(url)``: a transport for a URL, from a table of schemes that plugins extend.

Part of the transport SPI layer: the runtime (``System(transport="nats://…")``)
and the public ``seawall.connect`` call :func:`connect`, which imports no
adapter by itself. Each built-in scheme names its factory as
``module:attribute``, imported only when a URL asks for it, so ``import
seawall`` imports no broker client (nats-py, aio-pika, redis-py).

Third-party adapters plug in through the entry-point group
``seawall.transports`` (:data:`ENTRY_POINT_GROUP`): the entry point's name is
the URL scheme, its value the factory. In the adapter's ``pyproject.toml``::

    [project.entry-points."seawall.transports"]
    kafka = "seawall_kafka:KafkaTransport"

A factory (:class:`TransportFactory`) is called as ``factory(url,
clock=clock, options=options)`` and returns a :class:`Transport`; ``options``
is what the caller gave: None, the adapter's options object, or a mapping of
option names to values (from ``seawall.toml``), which
:meth:`TransportOptions.resolve <seawall._transport.options.TransportOptions.resolve>`
reads. A factory that names its :class:`TransportOptions` subclass in an
``options_type`` attribute lets ``seawall up`` check a ``seawall.toml``'s
options before it starts anything. A built-in scheme wins over an entry point
of the same name.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import urlsplit

from .._clock import Clock
from .._exceptions import ConfigurationError
from . import Transport

if TYPE_CHECKING:
    from importlib.metadata import EntryPoint

    from .options import TransportOptions

__all__ = [
    "BUILTIN",
    "ENTRY_POINT_GROUP",
    "TransportFactory",
    "connect",
    "options_type",
    "schemes",
]

ENTRY_POINT_GROUP = "seawall.transports"
"""The entry-point group third-party adapters register their URL schemes in."""

_OPTIONS = "seawall.transports._options:"
BUILTIN: Mapping[str, tuple[str, str]] = {
    scheme: (factory, _OPTIONS + options)
    for schemes_, factory, options in [
        (["memory"], "seawall.transports.memory:from_url", "MemoryOptions"),
        (["embedded"], "seawall.transports.embedded:from_url", "EmbeddedOptions"),
        (
            ["seawall", "seawalls", "seawall+unix", "seawalls+unix"],
            "seawall.transports.seawall:SeawallTransport",
            "SeawallOptions",
        ),
        (["nats"], "seawall.transports.nats:NatsTransport", "NatsOptions"),
        (["amqp", "amqps"], "seawall.transports.rabbitmq:RabbitMQTransport", "RabbitMQOptions"),
        (["redis", "rediss"], "seawall.transports.redis:RedisTransport", "RedisOptions"),
    ]
    for scheme in schemes_
}
"""Built-in scheme → (factory, options class), each as ``module:attribute``."""


class TransportFactory(Protocol):
    """What an entry point of :data:`ENTRY_POINT_GROUP` names: a URL → a transport."""

    def __call__(self, url: str, /, *, clock: Clock | None = ..., options: Any = ...) -> Any: ...


def connect(
    url: str,
    *,
    clock: Clock | None = None,
    options: TransportOptions | Mapping[str, Any] | None = None,
) -> Transport:
    """A transport for ``url``: ``memory://``, ``embedded://DIR``, ``seawall://host:port``,
    ``nats://host:port``, ``amqp://user:password@host:port/vhost`` (``amqps://`` for TLS),
    ``redis://host:port/db`` (``rediss://`` for TLS), or a plugin's scheme.

    Options come from ``url``'s query (``nats://h:4222?replicas=3``) over ``options``
    (the adapter's options object, or a mapping of its options). An embedded broker
    opens, and a broker client connects, on first use.
    """
    transport = _factory(url)(url, clock=clock, options=options)
    if not isinstance(transport, Transport):
        raise ConfigurationError(
            f"the factory for {_scheme(url)}:// returned {type(transport).__name__}, "
            "not a Transport (publish, subscribe, declare, close, capabilities)"
        )
    return transport


def schemes() -> dict[str, str]:
    """Every scheme :func:`connect` knows, with its factory (``module:attribute``)."""
    from importlib.metadata import entry_points  # only for plugins: a twelfth of the import

    known = {ep.name: ep.value for ep in entry_points(group=ENTRY_POINT_GROUP)}
    known.update({scheme: factory for scheme, (factory, _) in BUILTIN.items()})
    return dict(sorted(known.items()))


def options_type(url: str) -> type[TransportOptions] | None:
    """The options class of ``url``'s adapter; None for a plugin that does not name one."""
    from .options import TransportOptions  # its dataclasses are only for checking options

    scheme = _scheme(url)
    if scheme in BUILTIN:
        found = _load(BUILTIN[scheme][1])
    else:
        found = getattr(_plugin(scheme, url), "options_type", None)
    if isinstance(found, type) and issubclass(found, TransportOptions):
        return found
    return None


def _scheme(url: str) -> str:
    return urlsplit(url).scheme


def _factory(url: str) -> TransportFactory:
    scheme = _scheme(url)
    if scheme in BUILTIN:
        factory: TransportFactory = _load(BUILTIN[scheme][0])
        return factory
    return _plugin(scheme, url)


def _load(target: str) -> Any:
    """``module:attribute``, imported now (a built-in adapter needing a missing extra
    says which in its ConfigurationError)."""
    module, _, attribute = target.partition(":")
    found: Any = importlib.import_module(module)
    for name in attribute.split("."):
        found = getattr(found, name)
    return found


def _plugin(scheme: str, url: str) -> TransportFactory:
    from importlib.metadata import entry_points

    from .options import redact

    for entry in entry_points(group=ENTRY_POINT_GROUP, name=scheme):
        return _load_entry(entry)
    raise ConfigurationError(
        f"no transport for URL {redact(url)!r} (scheme {scheme!r}); the known schemes are "
        f"{', '.join(schemes())}; a third-party adapter adds its scheme through the "
        f"entry-point group {ENTRY_POINT_GROUP!r}"
    )


def _load_entry(entry: EntryPoint) -> TransportFactory:
    try:
        factory: TransportFactory = entry.load()
    except (ImportError, AttributeError) as exc:
        origin = f" (from {entry.dist.name})" if entry.dist else ""
        raise ConfigurationError(
            f"the transport for {entry.name}:// is {entry.value}{origin}, which cannot be "
            f"loaded: {exc}; is that package installed in this environment?"
        ) from exc
    return factory
