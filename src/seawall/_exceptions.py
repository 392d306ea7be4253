"""The one exception tree of seawall.

Every error seawall raises derives from :class:`SeawallError`. Driver errors
(sqlite3, nats, aio-pika, redis, asyncpg) are translated at the adapter edge;
where the meaning matches a stdlib type, that type is a base too, so
``except TimeoutError`` keeps working::

    SeawallError
    ├── ConfigurationError (ValueError)      bad settings, URL or handler signature
    ├── MessageError                         a message that cannot be used
    │   ├── DecodeError (ValueError)         bytes or headers that do not decode
    │   ├── UnknownMessageType (LookupError) no payload class for a type name
    │   │   └── UnknownVersion               none for its major version, no upcaster
    │   └── MessageTooLarge (ValueError)     over the transport's size limit
    ├── TransportError                       the broker or the link to it failed
    │   ├── TransportClosed                  used after close()
    │   ├── ConnectionLost                   link broken; subscribe again
    │   ├── ChannelFull                      publisher hit a channel's bound
    │   ├── PermissionDenied                 the broker refused this client
    │   ├── ProtocolError                    a peer broke the wire protocol; has a code
    │   └── StorageError                     the broker's disk store failed or was misused
    │       └── StorageCorrupted             a data file is damaged; names the file
    ├── RequestError                         a request got no usable reply
    │   ├── DeadlineExceeded (TimeoutError)  the deadline passed first
    │   ├── RemoteError                      the remote handler raised
    │   ├── UnexpectedReply (TypeError)      the reply is not of the type asked for
    │   ├── CircuitOpen                      the target's breaker is open; nothing was sent
    │   ├── Overloaded                       too many calls outstanding to the target; shed
    │   └── UnknownService (LookupError)     no instance of the target ever announced itself
    ├── ServiceError                         a service cannot run
    │   └── SupervisorGaveUp                 too many restarts in the window
    ├── EventStoreError                      the event store failed or was misused
    │   ├── ConcurrencyError                 append with a stale expected version
    │   ├── StaleEpoch                       a write fenced by a lost partition lease
    │   ├── AggregateNotFound (LookupError)  no events for that aggregate id
    │   └── EventLoadError (ValueError)      a stored event or snapshot cannot be read back
    └── OutboxError                          a service's outbox/inbox database or a relay's
                                             replication slot failed or was misused
"""

from __future__ import annotations

__all__ = [
    "AggregateNotFound",
    "ChannelFull",
    "CircuitOpen",
    "ConcurrencyError",
    "ConfigurationError",
    "ConnectionLost",
    "DeadlineExceeded",
    "DecodeError",
    "EventLoadError",
    "EventStoreError",
    "MessageError",
    "MessageTooLarge",
    "OutboxError",
    "Overloaded",
    "PermissionDenied",
    "ProtocolError",
    "RemoteError",
    "RequestError",
    "SeawallError",
    "ServiceError",
    "StaleEpoch",
    "StorageCorrupted",
    "StorageError",
    "SupervisorGaveUp",
    "TransportClosed",
    "TransportError",
    "UnexpectedReply",
    "UnknownMessageType",
    "UnknownService",
    "UnknownVersion",
]


class SeawallError(Exception):
    """Root of every error seawall raises."""


class ConfigurationError(SeawallError, ValueError):
    """Settings, a URL or a handler signature that cannot work."""


class MessageError(SeawallError):
    """A message that cannot be used as it is."""


class DecodeError(MessageError, ValueError):
    """Bytes or headers that do not decode into a message or payload."""


class UnknownMessageType(MessageError, LookupError):
    """No payload class is registered for a message type name."""


class UnknownVersion(UnknownMessageType):
    """The type is known, but not in the major version the message was written in.

    A major version is a breaking schema change: the reader needs a class of that
    major, or an upcaster that lifts it to one it has.
    """


class MessageTooLarge(MessageError, ValueError):
    """A message larger than the transport accepts."""


class TransportError(SeawallError):
    """The broker, or the link to it, failed."""


class TransportClosed(TransportError):
    """The transport or subscription was used after it was closed."""


class ConnectionLost(TransportError):
    """The link to the broker broke; unacknowledged deliveries will come again."""


class ChannelFull(TransportError):
    """A publisher hit a channel's bound and chose not to wait."""


class PermissionDenied(TransportError):
    """The broker refused this client the operation."""


class ProtocolError(TransportError):
    """A frame broke the wire protocol, or the peer answered with a protocol error.

    ``code`` is one of the protocol's error codes (``"malformed"``,
    ``"too-large"``, ``"bad-request"``, …) so code can branch without parsing text.
    """

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class StorageError(TransportError):
    """The embedded broker's store failed (disk, lock) or was called wrongly."""


class StorageCorrupted(StorageError):
    """A data file is damaged; ``path`` names it. Restore it from a backup or move it away."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(message)
        self.path = path


class RequestError(SeawallError):
    """A request did not get a usable reply."""


class DeadlineExceeded(RequestError, TimeoutError):
    """The request's deadline passed before a reply arrived or work began."""


class RemoteError(RequestError):
    """The remote handler raised; carries its error type, message and service."""

    def __init__(self, error_type: str, message: str, service: str) -> None:
        super().__init__(f"{service} failed with {error_type}: {message}")
        self.error_type = error_type
        self.error_message = message
        self.service = service


class UnexpectedReply(RequestError, TypeError):
    """The reply is not of the type the requester asked for (``returns=``)."""


class CircuitOpen(RequestError):
    """The target's circuit breaker is open: the call failed before anything was sent.

    ``retry_after`` is the seconds until the breaker lets a trial call through
    (an HTTP edge answers 503 with it as ``Retry-After``).
    """

    def __init__(self, target: str, retry_after: float) -> None:
        super().__init__(
            f"the circuit breaker for {target!r} is open after repeated failures; "
            f"nothing was sent; it lets a trial call through in {retry_after:.1f} s"
        )
        self.target = target
        self.retry_after = retry_after


class Overloaded(RequestError):
    """The caller already has its maximum of calls outstanding to the target, and its
    policy sheds the next one instead of waiting; nothing was sent. ``retry_after``
    is a hint in seconds."""

    def __init__(self, target: str, limit: int, retry_after: float = 1.0) -> None:
        super().__init__(
            f"{limit} calls to {target!r} are already outstanding (the call policy's limit); "
            "this one was shed without being sent; retry later or raise the limit"
        )
        self.target = target
        self.limit = limit
        self.retry_after = retry_after


class UnknownService(RequestError, LookupError):
    """No instance of the target service has ever announced itself to the registry,
    so a request to it could never be answered; it was not sent."""


class ServiceError(SeawallError):
    """A service cannot run."""


class SupervisorGaveUp(ServiceError):
    """A supervised task restarted more often than its intensity allows."""


class EventStoreError(SeawallError):
    """The event store failed (database, lock) or was called wrongly."""


class ConcurrencyError(EventStoreError):
    """An append expected a stream at one version and found it at another.

    Load the aggregate again, re-run the command on the fresh state, and save.
    """

    def __init__(self, stream: str, expected: int, actual: int) -> None:
        super().__init__(
            f"stream {stream!r} is at version {actual}, not the expected {expected}: someone "
            "else appended first; load it again and retry the command"
        )
        self.stream = stream
        self.expected = expected
        self.actual = actual


class StaleEpoch(EventStoreError):
    """A write that depends on owning a partition came under a lease that is gone.

    ``scope`` names the partition of a group, ``epoch`` the lease the writer read it
    under and ``current`` the newer epoch the store has seen: another member took the
    partition over (this one was paused or cut off longer than its lease) and its
    writes win. Nothing was written; the message comes again to the new owner.
    """

    def __init__(self, scope: str, epoch: int, current: int) -> None:
        super().__init__(
            f"write refused: partition {scope} is owned under epoch {current} now, this "
            f"writer held it under epoch {epoch} (its lease ran out while it was paused or "
            "cut off); nothing was written, and the new owner handles the message again"
        )
        self.scope = scope
        self.epoch = epoch
        self.current = current


class AggregateNotFound(EventStoreError, LookupError):
    """No event (and no snapshot) is stored for the aggregate asked for."""


class EventLoadError(EventStoreError, ValueError):
    """A stored event or snapshot cannot be decoded: unknown type or version, or bad bytes."""

    def __init__(
        self, reason: str, *, type_name: str, version: str, stream: str, position: int
    ) -> None:
        super().__init__(
            f"cannot load {type_name!r} version {version} from stream {stream!r} at position "
            f"{position}: {reason}"
        )
        self.type_name = type_name
        self.version = version
        self.stream = stream
        self.position = position


class OutboxError(SeawallError):
    """The outbox's database (its tables, the inbox, a relay's replication slot) failed.

    Raised for the outbox's own statements and for statements a service runs through an
    outbox transaction; the driver's error (sqlite3, asyncpg) is its ``__cause__``.
    """
