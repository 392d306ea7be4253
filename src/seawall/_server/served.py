"""What every session of one broker server shares.

:class:`Served` holds the transport being served, the
:class:`~seawall._server.acl.ServerConfig`, the clock, the Welcome every client
gets, the owners of reply inboxes (:mod:`.inboxes`), how many connections each
configured client holds, and the server's :class:`ServerStatistics`. The
server makes one; each :class:`~seawall._server.session.Session` reads and
updates it, all on the event loop's thread.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from .._clock import Clock
from .._messages.envelope import Message
from .._transport import Transport
from .._wire.protocol import PROTOCOL_VERSION, Welcome
from .acl import Client, ServerConfig
from .inboxes import InboxOwners

__all__ = ["Served", "ServerStatistics"]


@dataclass(kw_only=True)
class ServerStatistics:
    """Counters of one broker server, for tests, logs and metrics."""

    connections: int = 0
    """Connections open now, whether past Welcome or not (the server counts them when
    :meth:`~seawall._server.server.BrokerServer.statistics` takes a snapshot)."""
    accepted: int = 0
    """Connections taken since the server started."""
    refused: int = 0
    """Connections turned away at ``max_connections`` (the server's or a client's)."""
    unwelcome: int = 0
    """Connections closed before Welcome for no Hello in time, a bad first frame or a bad
    token (refusals are counted in ``refused`` only)."""


class PublishCalling(Protocol):
    """A transport's publish that needs no task when nothing waits (the embedded broker's
    :meth:`~seawall.transports.embedded.EmbeddedTransport.publish_calling`)."""

    def __call__(
        self,
        channel: str,
        message: Message,
        body: bytes,
        done: Callable[[BaseException | None], None],
        *,
        priority: int = 0,
    ) -> bool: ...


class Served:
    """What every session of one server shares; see the module docstring."""

    def __init__(self, transport: Transport, config: ServerConfig, clock: Clock, name: str) -> None:
        self.transport = transport
        self.publish_calling: PublishCalling | None = getattr(transport, "publish_calling", None)
        """The transport's publish without a task, if it has one."""
        self.hold_writes: Callable[[], Callable[[], None] | None] | None = getattr(
            transport, "hold_writes", None
        )
        """The transport's way to gather the writes of many publishes, if it has one: call
        it before, and what it returns (if not None) after."""
        self.config = config
        self.clock = clock
        self.owners = InboxOwners()
        self.stats = ServerStatistics()
        self._connected: Counter[str] = Counter()  # by client name
        capabilities = transport.capabilities
        limit = capabilities.max_message_bytes
        max_message = config.max_message if limit is None else min(limit, config.max_message)
        self.welcome = Welcome(
            PROTOCOL_VERSION,
            name,
            max_frame=config.max_frame,
            max_message=max_message,
            heartbeat=config.heartbeat,
            durability=capabilities.durability.value,
            partitions=capabilities.partitions,
            delayed_redelivery=capabilities.delayed_redelivery,
            delayed_delivery=capabilities.delayed_delivery,
            replay=capabilities.replay,
            priorities=capabilities.priorities,
            group_expiry=capabilities.group_expiry,
            batched=True,
        )

    def has_channel(self, name: str) -> bool:
        """Whether the transport has ``name``; only asked when ``auto_create`` is off."""
        return bool(self.transport.has_channel(name))  # type: ignore[attr-defined]

    def connected(self, client: Client) -> int:
        """Connections ``client`` holds now (counted from Welcome on)."""
        return self._connected[client.name]

    def admit(self, client: Client) -> bool:
        """Count one more connection of ``client``; False if it is at its max_connections."""
        limit = client.max_connections
        if limit is not None and self._connected[client.name] >= limit:
            return False
        self._connected[client.name] += 1
        return True

    def leave(self, client: Client) -> None:
        """A connection :meth:`admit` counted has ended."""
        self._connected[client.name] -= 1
        if self._connected[client.name] <= 0:
            del self._connected[client.name]
