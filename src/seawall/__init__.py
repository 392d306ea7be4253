"""seawall: reactive, message-driven microservices for Python asyncio.

The public API is re-exported here; modules starting with ``_`` are private.
"""

from __future__ import annotations

from typing import TYPE_CHECKING
from typing import Any as _Any

from . import _lazy
from ._clock import Clock, SystemClock, VirtualClock
from ._exceptions import (
    AggregateNotFound,
    ChannelFull,
    CircuitOpen,
    ConcurrencyError,
    ConfigurationError,
    ConnectionLost,
    DeadlineExceeded,
    DecodeError,
    EventLoadError,
    EventStoreError,
    MessageError,
    MessageTooLarge,
    OutboxError,
    Overloaded,
    PermissionDenied,
    ProtocolError,
    RemoteError,
    RequestError,
    SeawallError,
    ServiceError,
    StaleEpoch,
    StorageCorrupted,
    StorageError,
    SupervisorGaveUp,
    TransportClosed,
    TransportError,
    UnexpectedReply,
    UnknownMessageType,
    UnknownService,
    UnknownVersion,
)
from ._messages.codec import JSON, MSGPACK, Codec, JsonCodec, MsgPackCodec
from ._messages.envelope import Message, from_headers, to_headers
from ._messages.ids import uuid7
from ._messages.payload import Command, Document, Event, Payload, TypeRegistry
from ._messages.upcast import Upcaster, Upcasters
from ._runtime.context import Context, Reply
from ._runtime.dispatcher import DLQ_HEADERS, Stats, dead_letter_channel
from ._runtime.middleware import (
    AroundHandle,
    AroundSend,
    Handling,
    Middleware,
    NextHandle,
    NextSend,
    Outcome,
    Outgoing,
)
from ._runtime.retry import RetryPolicy
from ._runtime.service import Expired, Service
from ._runtime.system import System
from ._transport import (
    Capabilities,
    ChannelSpec,
    Delivery,
    Durability,
    FromOffsets,
    FromTime,
    Subscription,
    Transport,
    partition_for,
)
from ._transport.schemes import connect

if TYPE_CHECKING:
    from ._runtime.health import Health
    from ._runtime.supervisor import RestartIntensity, Supervisor
    from ._transport.ownership import Fence
    from .transports.memory import MemoryTransport

__all__ = [
    "AggregateNotFound",
    "AroundHandle",
    "AroundSend",
    "Capabilities",
    "ChannelFull",
    "ChannelSpec",
    "CircuitOpen",
    "Clock",
    "Codec",
    "Command",
    "ConcurrencyError",
    "ConfigurationError",
    "ConnectionLost",
    "Context",
    "DLQ_HEADERS",
    "DeadlineExceeded",
    "DecodeError",
    "Delivery",
    "Document",
    "Durability",
    "Event",
    "EventLoadError",
    "EventStoreError",
    "Expired",
    "Fence",
    "FromOffsets",
    "FromTime",
    "Handling",
    "Health",
    "JSON",
    "JsonCodec",
    "MSGPACK",
    "MemoryTransport",
    "Message",
    "MessageError",
    "MessageTooLarge",
    "Middleware",
    "MsgPackCodec",
    "NextHandle",
    "NextSend",
    "OutboxError",
    "Outcome",
    "Outgoing",
    "Overloaded",
    "Payload",
    "PermissionDenied",
    "ProtocolError",
    "RemoteError",
    "Reply",
    "RequestError",
    "RestartIntensity",
    "RetryPolicy",
    "SeawallError",
    "Service",
    "ServiceError",
    "StaleEpoch",
    "Stats",
    "StorageCorrupted",
    "StorageError",
    "Subscription",
    "Supervisor",
    "SupervisorGaveUp",
    "System",
    "SystemClock",
    "Transport",
    "TransportClosed",
    "TransportError",
    "TypeRegistry",
    "UnexpectedReply",
    "UnknownMessageType",
    "UnknownService",
    "UnknownVersion",
    "Upcaster",
    "Upcasters",
    "VirtualClock",
    "__version__",
    "connect",
    "dead_letter_channel",
    "from_headers",
    "partition_for",
    "to_headers",
    "uuid7",
]


_LAZY = {
    "Fence": "._transport.ownership",
    "Health": "._runtime.health",
    "MemoryTransport": ".transports.memory",
    "RestartIntensity": "._runtime.supervisor",
    "Supervisor": "._runtime.supervisor",
}
"""Loaded on first use, as ``System`` loads them when it needs them: the adapters' options
and the memory broker's log (``System("memory://")`` imports its adapter), the supervisor
(with the first ``System``), the health report (on the first probe) and the partition
ownership (only for partitioned channels). Each module's dataclasses cost more to create
than the rest of its code."""


def __getattr__(name: str) -> _Any:
    # __version__ is read from the installed metadata on first use: importlib.metadata's
    # scan of the installed distributions would otherwise be an eighth of the import.
    if name == "__version__":
        from importlib.metadata import version

        value = globals()["__version__"] = version("seawall")
        return value
    return _load(name)


_load = _lazy.loader(__name__, _LAZY, globals())
__dir__ = _lazy.exported(globals(), __all__)
