"""Broker adapters, one module each, chosen by URL with :func:`connect`.

:func:`connect` is the scheme table of :mod:`seawall._transport.schemes`: it
imports an adapter only when a URL asks for it, and third-party adapters add
schemes through the entry-point group ``seawall.transports``. Every adapter's
options are a frozen value object exported here (from a module that imports no
broker client), filled from code, the URL's query or ``seawall.toml``::

    connect("nats://127.0.0.1:4222?replicas=3&ack_wait=60")
    connect("nats://127.0.0.1:4222", options=NatsOptions(replicas=3))
    NatsTransport("nats://127.0.0.1:4222", replicas=3)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .. import _lazy
from .._fsync import SyncPolicy
from .._transport.options import TransportOptions
from .._transport.schemes import ENTRY_POINT_GROUP, TransportFactory, connect, schemes
from ._options import (
    EmbeddedOptions,
    MemoryOptions,
    NatsOptions,
    RabbitMQOptions,
    RedisOptions,
    SeawallOptions,
)
from .memory import MemoryTransport

if TYPE_CHECKING:
    from .embedded import EmbeddedTransport
    from .seawall import SeawallTransport
    from .sqlite_replies import SqliteReplyStore

__all__ = [
    "ENTRY_POINT_GROUP",
    "EmbeddedOptions",
    "EmbeddedTransport",
    "MemoryOptions",
    "MemoryTransport",
    "NatsOptions",
    "RabbitMQOptions",
    "RedisOptions",
    "SeawallOptions",
    "SeawallTransport",
    "SqliteReplyStore",
    "SyncPolicy",
    "TransportFactory",
    "TransportOptions",
    "connect",
    "schemes",
]

_LAZY = {
    "EmbeddedTransport": ".embedded",
    "SeawallTransport": ".seawall",
    "SqliteReplyStore": ".sqlite_replies",
}
"""Loaded on first use: the embedded broker (its engine, store and sqlite3) and the
``seawall://`` client cost a fifth of ``import seawall`` and most programs use one at most."""


__getattr__ = _lazy.loader(__name__, _LAZY, globals())
__dir__ = _lazy.exported(globals(), __all__)
