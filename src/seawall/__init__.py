"""seawall: reactive, message-driven microservices for Python asyncio.

The public API is re-exported here; modules starting with ``_`` are private.
"""

from __future__ import annotations

from importlib.metadata import version as _version

from ._clock import Clock, SystemClock, VirtualClock
from ._codec import JSON, MSGPACK, Codec, JsonCodec, MsgPackCodec
from ._context import Context, Reply
from ._dispatcher import DLQ_HEADERS, Stats, dead_letter_channel
from ._exceptions import (
    ChannelFull,
    ConfigurationError,
    ConnectionLost,
    DeadlineExceeded,
    DecodeError,
    MessageError,
    MessageTooLarge,
    PermissionDenied,
    ProtocolError,
    RemoteError,
    RequestError,
    SeawallError,
    ServiceError,
    StorageCorrupted,
    StorageError,
    SupervisorGaveUp,
    TransportClosed,
    TransportError,
    UnknownMessageType,
)
from ._ids import uuid7
from ._message import Message, from_headers, to_headers
from ._payload import Command, Document, Event, Payload, TypeRegistry
from ._retry import RetryPolicy
from ._service import Service
from ._supervisor import RestartIntensity, Supervisor
from ._system import System
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
from .transports import MemoryTransport, connect

__version__ = _version("seawall")

__all__ = [
    "Capabilities",
    "ChannelFull",
    "ChannelSpec",
    "Clock",
    "Codec",
    "Command",
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
    "FromOffsets",
    "FromTime",
    "JSON",
    "JsonCodec",
    "MSGPACK",
    "MemoryTransport",
    "Message",
    "MessageError",
    "MessageTooLarge",
    "MsgPackCodec",
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
    "UnknownMessageType",
    "VirtualClock",
    "__version__",
    "connect",
    "dead_letter_channel",
    "from_headers",
    "partition_for",
    "to_headers",
    "uuid7",
]
