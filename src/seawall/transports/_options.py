"""The options of every built-in adapter, one frozen value object each.

Part of the adapters layer, but free of drivers: ``seawall.transports`` exports
these classes without importing nats-py, aio-pika or redis-py, and ``seawall
up`` checks a ``seawall.toml`` with them before anything starts. Each adapter
package re-exports its own. How values are read from a URL query or a TOML
table is :mod:`seawall._transport.options`; what each option does is said in
the adapter's module docstring. Defaults are the adapters' defaults.

Next to each options class, a ``…Settings`` typed dict spells the same options
as the constructor's keyword arguments (``NatsTransport(url, replicas=3)``);
a test holds the two to the same names and types.

The ``seawall://`` client's token and TLS context stay constructor arguments
(:class:`~seawall.transports.seawall.SeawallTransport`): a secret and an
object, not tunables; the token may also be the URL's user part.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, TypedDict

from .._broker.limits import BrokerLimits
from .._fsync import SyncPolicy
from .._transport.options import Bytes, Seconds, TransportOptions
from .._wire.defaults import DEFAULT_HEARTBEAT

__all__ = [
    "EmbeddedOptions",
    "EmbeddedSettings",
    "MemoryOptions",
    "MemorySettings",
    "NatsOptions",
    "NatsSettings",
    "RabbitMQOptions",
    "RabbitMQSettings",
    "RedisOptions",
    "RedisSettings",
    "SeawallOptions",
    "SeawallSettings",
]


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


def _positive(options: TransportOptions, *names: str) -> None:
    for name in names:
        options.need(name, getattr(options, name) > 0, "a positive number")


def _at_least_one(options: TransportOptions, *names: str) -> None:
    for name in names:
        options.need(name, getattr(options, name) >= 1, "at least 1")


def _never_negative(options: TransportOptions, *names: str) -> None:
    for name in names:
        value = getattr(options, name)
        options.need(name, value is None or value >= 0, "0 or more (none: wait for ever)")


# -- memory:// -------------------------------------------------------------------------
@dataclass(frozen=True, kw_only=True)
class MemoryOptions(TransportOptions):
    """``memory://``: the in-process reference transport."""

    serialize: bool = False
    """Encode and decode every message, as a real broker would (the test system's setting).
    Off (the default): pass each message as an object, with the sender's payload object for
    a handler of its very class when that class is immutable all the way down."""
    max_message_bytes: Bytes = 1 << 20
    publish_timeout: Seconds | None = 30.0
    """How long a publisher waits for room in a full channel before ChannelFull."""
    default_partitions: int = 1
    """Partitions of a channel created by first use rather than declared."""

    def check(self) -> None:
        _at_least_one(self, "max_message_bytes", "default_partitions")
        _never_negative(self, "publish_timeout")


class MemorySettings(TypedDict, total=False):
    serialize: bool
    max_message_bytes: int
    publish_timeout: float | None
    default_partitions: int


# -- embedded:// -----------------------------------------------------------------------
_LIMITS = BrokerLimits()


@dataclass(frozen=True, kw_only=True)
class EmbeddedOptions(TransportOptions):
    """``embedded://DIR``: the durable broker inside this process."""

    sync: SyncPolicy = "batch"
    """When an acknowledged publish is fsynced (see :mod:`seawall._fsync`)."""
    window: Seconds = 0.002
    """How long ``batch`` (and ``none``) gather commits to share one write."""
    max_message_bytes: Bytes = _LIMITS.max_message_bytes
    publish_timeout: Seconds | None = _LIMITS.publish_timeout
    """How long a publisher waits for room in a full channel before ChannelFull."""
    default_partitions: int = _LIMITS.default_partitions
    """Partitions of a channel created by first use rather than declared."""
    tail: int = _LIMITS.tail
    """Entries per partition kept in memory for consumers that keep up."""
    retention_interval: Seconds = _LIMITS.retention_interval
    """Seconds between two applications of the channels' ``max_age`` / ``max_bytes``."""
    dedupe_window: Seconds = _LIMITS.dedupe_window
    """Seconds a channel remembers the message ids of stored publishes: a publish with
    an id it remembers (a retry after a lost acknowledgement) is acknowledged without
    being stored again, across a restart too, as JetStream's duplicate window (0: off).
    A dead letter or a request sent again on purpose has a key of its own."""
    dedupe_ids: int = _LIMITS.dedupe_ids
    """Ids a channel remembers at most (its memory bound): a higher publish rate than
    ``dedupe_ids / dedupe_window`` per second shortens the window."""

    def check(self) -> None:
        _at_least_one(self, "max_message_bytes", "default_partitions", "tail", "dedupe_ids")
        _never_negative(self, "window", "publish_timeout", "dedupe_window")
        _positive(self, "retention_interval")

    def limits(self) -> BrokerLimits:
        """The broker's bounds these options give."""
        return BrokerLimits(
            max_message_bytes=self.max_message_bytes,
            publish_timeout=self.publish_timeout,
            default_partitions=self.default_partitions,
            tail=self.tail,
            retention_interval=self.retention_interval,
            dedupe_window=self.dedupe_window,
            dedupe_ids=self.dedupe_ids,
        )


class EmbeddedSettings(TypedDict, total=False):
    sync: SyncPolicy
    window: float
    max_message_bytes: int
    publish_timeout: float | None
    default_partitions: int
    tail: int
    retention_interval: float
    dedupe_window: float
    dedupe_ids: int


# -- seawall:// ------------------------------------------------------------------------
@dataclass(frozen=True, kw_only=True)
class SeawallOptions(TransportOptions):
    """``seawall://host:port``: a client of the broker server (``seawall broker``)."""

    name: str | None = None
    """This client's name in the broker's logs (default: ``host/pid``)."""
    heartbeat: Seconds = DEFAULT_HEARTBEAT
    connect_timeout: Seconds = 5.0
    pipeline: int = 1024
    """Requests in flight on the connection at most."""
    publish_timeout: Seconds | None = 30.0
    """How long a publish whose link broke keeps connecting again and retrying (a
    restarted broker is picked up) before it raises ConnectionLost (None: for ever)."""

    def check(self) -> None:
        _positive(self, "heartbeat", "connect_timeout")
        _never_negative(self, "publish_timeout")
        _at_least_one(self, "pipeline")


class SeawallSettings(TypedDict, total=False):
    name: str | None
    heartbeat: float
    connect_timeout: float
    pipeline: int
    publish_timeout: float | None


# -- nats:// ---------------------------------------------------------------------------
@dataclass(frozen=True, kw_only=True)
class NatsOptions(TransportOptions):
    """``nats://host:port``: NATS JetStream (see :mod:`seawall.transports.nats`)."""

    publish_timeout: Seconds | None = 30.0
    ack_wait: Seconds = 30.0
    pull_expires: Seconds = 5.0
    lease: Seconds = 1.5
    """Seconds a member's partition leases outlive its last renewal: a member that dies
    loses its partitions within it (fail-over), and its unsettled messages of them come
    again first (a partitioned group's ``AckWait`` is at most half of it)."""
    replicas: int = 1
    """Copies of each channel's stream; 3 or more: :attr:`Durability.REPLICATED`."""
    max_ack_pending: int = 20_000
    api_timeout: Seconds = 2.0
    reconnect_wait: Seconds = 0.25
    connect_timeout: Seconds = 2.0
    name: str = "seawall"
    """The client's name, as ``nats server report connections`` shows it."""

    def check(self) -> None:
        _never_negative(self, "publish_timeout")
        _positive(self, "ack_wait", "pull_expires", "lease", "api_timeout", "connect_timeout")
        _never_negative(self, "reconnect_wait")
        pending = self.max_ack_pending
        self.need("max_ack_pending", pending >= 1 or pending == -1, "at least 1, or -1: no limit")
        self.need("replicas", 1 <= self.replicas <= 5, "1 to 5 (JetStream's limit)")


class NatsSettings(TypedDict, total=False):
    publish_timeout: float | None
    ack_wait: float
    pull_expires: float
    lease: float
    replicas: int
    max_ack_pending: int
    api_timeout: float
    reconnect_wait: float
    connect_timeout: float
    name: str


# -- redis:// --------------------------------------------------------------------------
@dataclass(frozen=True, kw_only=True)
class RedisOptions(TransportOptions):
    """``redis://host:port/db``: Redis Streams (see :mod:`seawall.transports.redis`)."""

    # redis-py's URL_QUERY_ARGUMENT_PARSERS, and the text keyword arguments of its
    # connections that a URL may carry (redis-py passes unknown keys on to them)
    driver_keys: ClassVar[frozenset[str]] = _words(
        "db socket_timeout socket_connect_timeout socket_read_size socket_keepalive "
        "retry_on_timeout retry_on_error max_connections health_check_interval "
        "ssl_check_hostname ssl_include_verify_flags ssl_exclude_verify_flags "
        "ssl_min_version timeout protocol legacy_responses client_name username password "
        "ssl_cert_reqs ssl_ca_certs ssl_ca_path ssl_ca_data ssl_certfile ssl_keyfile "
        "ssl_password ssl_ciphers lib_name lib_version"
    )
    driver: ClassVar[str] = "redis-py"

    prefix: str = "seawall"
    """First part of every key this transport writes."""
    publish_timeout: Seconds | None = 30.0
    claim_idle: Seconds = 30.0
    """Seconds an entry of another consumer stays idle before a member claims it: a dead
    member's entries come again within it (within ``max(claim_idle, lease)`` when its
    partition lease must run out first)."""
    lease: Seconds = 1.5
    """Seconds a member's partition leases outlive its last renewal: a member that dies
    loses its partitions within it, and the next owner claims its unsettled entries of
    them before reading on (per-key order across a crash)."""
    rebalance: Seconds = 0.1
    poll: Seconds = 0.25
    max_message_bytes: Bytes = 8 << 20
    connect_timeout: Seconds = 2.0
    api_timeout: Seconds = 5.0
    ephemeral_ttl: Seconds = 60.0
    """Seconds the keys of an ephemeral channel outlive its owner's last renewal."""

    def check(self) -> None:
        self.need("prefix", bool(self.prefix), "non-empty text")
        _never_negative(self, "publish_timeout")
        _positive(self, "claim_idle", "lease", "rebalance", "poll")
        _positive(self, "connect_timeout", "api_timeout")
        self.need("ephemeral_ttl", self.ephemeral_ttl > 0, "a positive number of seconds")
        _at_least_one(self, "max_message_bytes")


class RedisSettings(TypedDict, total=False):
    prefix: str
    publish_timeout: float | None
    claim_idle: float
    lease: float
    rebalance: float
    poll: float
    max_message_bytes: int
    connect_timeout: float
    api_timeout: float
    ephemeral_ttl: float | None  # None: as if not given (the constructor's old default)


# -- amqp:// ---------------------------------------------------------------------------
@dataclass(frozen=True, kw_only=True)
class RabbitMQOptions(TransportOptions):
    """``amqp://user:password@host:port/vhost``: RabbitMQ (:mod:`seawall.transports.rabbitmq`)."""

    # what aiormq reads from the URL, and aio-pika's Connection parameters
    driver_keys: ClassVar[frozenset[str]] = _words(
        "auth cafile capath cadata certfile keyfile no_verify_ssl timeout heartbeat "
        "interleave happy_eyeballs_delay"
    )
    driver: ClassVar[str] = "aio-pika"

    publish_timeout: Seconds | None = 30.0
    connect_timeout: Seconds = 2.0
    lease: Seconds = 1.5
    """Seconds a member's partition leases outlive its last announcement (fail-over)."""
    max_message_bytes: Bytes = 16 << 20
    name: str = "seawall"
    """The connection's name, as the RabbitMQ management UI shows it."""

    def check(self) -> None:
        _never_negative(self, "publish_timeout")
        _positive(self, "connect_timeout", "lease")
        _at_least_one(self, "max_message_bytes")


class RabbitMQSettings(TypedDict, total=False):
    publish_timeout: float | None
    connect_timeout: float
    lease: float
    max_message_bytes: int
    name: str
