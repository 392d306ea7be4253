"""The transport interface every broker adapter implements.

Five calls: :meth:`Transport.publish`, :meth:`Transport.subscribe` (which
returns a :class:`Subscription`, an async iterator of :class:`Delivery`),
settling a delivery with :meth:`Subscription.ack` / :meth:`Subscription.nack`,
and :meth:`Transport.close`. A graceful stop calls
:meth:`Subscription.stop_intake` first, so that what it then hands back goes
to the group in order and not to itself. Channels are declared implicitly on
first use with :class:`ChannelSpec` defaults, or explicitly with
:meth:`Transport.declare`, and removed with :meth:`Transport.delete` (a
channel with its groups, or one group of it).

The model every adapter maps onto its broker:

* A channel is an ordered log split into ``partitions``. A message's
  partition is ``partition_for(message.partitionkey, partitions)``.
* Consumers subscribe as a *group*. Every group gets every message
  (publish-subscribe); members of one group compete (point-to-point).
* With one partition, members share it and any member may take any message.
  With several, each partition belongs to one member at a time (rebalanced as
  members come and go), so messages of one key reach one member in order.
* A delivery is in flight until acked or nacked; at most ``prefetch`` are in
  flight per subscription (credit-based back-pressure). A nack, or a closed
  or broken subscription, makes the message come again, ``attempt`` + 1.
* ``publish`` returns once the message is as durable as
  :attr:`Capabilities.durability` declares.

Retries, dead letters and per-key ordering inside a consumer are built once
above this interface (see ``_dispatcher``), never inside an adapter.
"""

from __future__ import annotations

import enum
import zlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Literal, Protocol, runtime_checkable

import msgspec

from .._exceptions import ConfigurationError
from .._messages.envelope import Message

__all__ = [
    "Capabilities",
    "ChannelSpec",
    "Delivery",
    "Durability",
    "FromOffsets",
    "FromTime",
    "RequestPath",
    "Start",
    "StartAt",
    "Subscription",
    "Transport",
    "fixed_start",
    "is_reply_inbox",
    "is_request",
    "partition_for",
    "reply_inbox",
]

StartAt = Literal["earliest", "latest"]
"""Where a new group starts: the oldest message kept, or the next one published."""


@dataclass(frozen=True)
class FromOffsets:
    """A new group starts at these offsets, one per log (replay from a position).

    A channel has a log per partition, or per priority level. An offset is a
    message's position in its log, counted from 0, as the transport numbers
    them: consecutive on memory, embedded and Redis; on NATS, where the logs of
    a channel share one stream, the stream sequence minus one. On a channel
    with a single log every transport numbers the same way. A start below the
    oldest message kept starts there; one past the newest, at the next one.
    """

    offsets: tuple[int, ...]


@dataclass(frozen=True)
class FromTime:
    """A new group starts at the first message stored at or after ``time`` (epoch seconds)."""

    time: float


RequestPath = Literal["stored", "direct"]
"""How requests travel on a channel; see :attr:`ChannelSpec.requests`."""

Start = StartAt | FromOffsets | FromTime
"""Every way a new group may start; transports with ``Capabilities.replay`` take all."""


class Durability(enum.Enum):
    """What a publish acknowledgement promises."""

    MEMORY = "memory"
    """Held in a process's memory; lost if that process dies."""
    WRITTEN = "written"
    """Handed to one machine's operating system, fsynced later: survives the broker
    process dying, not the machine losing power."""
    LOCAL_FSYNC = "local-fsync"
    """Written and fsynced on one machine's disk."""
    REPLICATED = "replicated"
    """Stored on a quorum of machines."""


@dataclass(frozen=True, kw_only=True)
class Capabilities:
    """What a transport declares about itself; the conformance suite checks it."""

    durability: Durability
    partitions: bool = False
    """Channels may have more than one partition with per-key order."""
    delayed_redelivery: bool = False
    """``nack(delay=…)`` holds the message back for at least ``delay`` seconds."""
    delayed_delivery: bool = False
    """``publish(not_before=…)`` holds a new message back until that time."""
    max_message_bytes: int | None = None
    """Largest encoded message accepted, or None for no stated limit."""
    replay: bool = False
    """``subscribe(start=FromOffsets(...) | FromTime(...))`` starts a new group there
    (in what the channel still keeps: entries every group settled may be gone)."""
    priorities: int = 1
    """Priority levels a channel may have (``ChannelSpec.priorities``)."""
    group_expiry: bool = False
    """``subscribe(idle_expiry=…)`` is honoured: the broker deletes a group by itself
    once it has had no member for that long. False: the keyword is accepted and
    ignored, and a group stays until :meth:`Transport.delete` (or its channel) goes."""


@dataclass(frozen=True, kw_only=True)
class ChannelSpec:
    """How a channel is laid out; used when a channel is first created."""

    name: str
    partitions: int = 1
    max_messages: int = 100_000
    """Bound on messages held for the slowest group; publishers wait beyond it."""
    ephemeral: bool = False
    """A reply inbox: no durability needed, removed when its subscriber leaves."""
    max_age: float | None = None
    """Retention: messages older than this many seconds are dropped, read or not
    (durable brokers only; None keeps them until every group settled them)."""
    max_bytes: int | None = None
    """Retention: the oldest messages are dropped while a partition holds more."""
    priorities: int = 1
    """Priority levels of a point-to-point channel (one partition only): a higher
    level is delivered first, FIFO within a level."""
    sync_requests: bool = True
    """Whether a request published here (a message with a reply channel and a
    deadline) is fsynced before it is acknowledged and delivered, where the broker
    fsyncs (``embedded://`` and ``seawall://`` under ``sync=always`` or ``batch``).
    False: such a request is committed without an fsync, so it survives a crash of
    the broker process but a power loss may take it, and its caller, waiting with
    the deadline, times out and may ask again. Other messages of the channel are
    fsynced as the broker's policy says. Brokers that do not fsync per message
    (NATS, RabbitMQ, Redis, memory) ignore it."""
    requests: RequestPath = "stored"
    """How a request published here (a message with a reply channel and a deadline)
    travels to the channel's groups. ``"stored"`` (the default): like any other
    message, stored as the transport's durability says, so it waits for a responder
    that is down, survives a broker restart and is dead-lettered after its retries.
    ``"direct"``: handed to a live member of each group without being stored, for
    callers that wait with a deadline and may ask again (a retried request keeps its
    message id, and the responder's reply cache, :mod:`seawall.resilience.replies`,
    answers the repeat without running the handler twice). The trade-off: a direct
    request published while no member listens, or held by a member that dies or
    whose link breaks, is lost, and its caller times out
    (:class:`~seawall.DeadlineExceeded`) and retries. A member that nacks one (a
    failed handler) gets it again from memory, and the runtime still dead-letters
    one that exhausted its attempts. Direct requests keep no per-key order with
    each other nor with the channel's stored messages, ignore priority levels, and
    are not counted in ``max_messages``. Other messages of the channel (commands
    sent without waiting, events, requests with ``not_before``) are stored as
    always. Carried directly by ``nats://`` (core NATS, a queue group per group),
    ``embedded://`` and ``seawall://`` (handed from the broker's memory, never
    appended to its log); ``redis://`` and ``amqp://`` store them as ``"stored"``
    does. ``memory://`` keeps nothing durable anyway: there the runtime answers a
    request made in the process hosting the channel's only group in the caller's
    task when a worker is free (see the runtime's dispatcher, ``claim``), and
    stores the others as ``"stored"`` does."""

    def __post_init__(self) -> None:
        if self.requests not in ("stored", "direct"):
            raise ConfigurationError(
                f"channel {self.name!r}: requests must be 'stored' or 'direct', "
                f"got {self.requests!r}"
            )
        if not 1 <= self.priorities <= MAX_PRIORITIES:
            raise ConfigurationError(
                f"channel {self.name!r}: priorities must be 1 to {MAX_PRIORITIES}, "
                f"got {self.priorities}"
            )
        if self.priorities > 1 and self.partitions != 1:
            raise ConfigurationError(
                f"channel {self.name!r}: priority levels need a single partition (got "
                f"{self.partitions}); per-key order and priorities do not mix"
            )


MAX_PRIORITIES = 10
"""Most priority levels a channel may have."""


def fixed_start(start: Start, transport: str, why: str) -> StartAt:
    """``start`` for a transport that cannot replay: ``earliest`` or ``latest`` only.

    Anything else raises :class:`~seawall.ConfigurationError` naming the
    capability, the broker, ``why`` it cannot, and the transports that can.
    """
    if isinstance(start, str):
        return start
    raise ConfigurationError(
        f"the {transport} transport has no replay (Capabilities.replay is False), so a "
        f"group cannot start at {start!r}: {why}; start at 'earliest' or 'latest', or "
        "use a transport that replays: nats://, redis://, embedded://DIR, seawall:// "
        "(a broker server) or memory://"
    )


REPLY_INBOX_PREFIX = "_inbox."
"""Channels named so are reply inboxes: one per process instance, declared ephemeral,
never created by a publish. Brokers carry them their own way (core NATS, a plain queue),
and the broker server keeps each private to the client that reads it."""


def reply_inbox(instance: str) -> str:
    """The reply inbox of a process instance."""
    return REPLY_INBOX_PREFIX + instance


def is_reply_inbox(channel: str) -> bool:
    """Whether ``channel`` is a reply inbox."""
    return channel.startswith(REPLY_INBOX_PREFIX)


def is_request(message: Message) -> bool:
    """Whether ``message`` is a request: it names a reply channel and a deadline."""
    return message.replyto is not None and message.deadline is not None


def partition_for(key: str | None, partitions: int) -> int:
    """The partition for a key: a stable hash (CRC-32) every process agrees on."""
    if partitions <= 1 or key is None:
        return 0
    return zlib.crc32(key.encode()) % partitions


class Delivery(msgspec.Struct):
    """One message handed to a subscriber, waiting to be settled.

    A msgspec Struct rather than a dataclass: one is made per delivery, and a Struct is
    built in C, without a Python ``__init__`` frame. Positional arguments are allowed (in
    field order), as the memory transport's delivery loop passes them.
    """

    message: Message
    channel: str
    partition: int
    attempt: int
    """1 on first delivery, then counted up by every redelivery."""
    token: object
    """The transport's handle for settling this delivery."""
    payload: Any = None
    """The sender's payload object, when an in-process transport hands it over with the
    message (see :mod:`seawall.transports.memory`); None: read it from ``message.data``."""


@runtime_checkable
class Subscription(Protocol):
    """A group member's stream of deliveries.

    Iterating yields deliveries until :meth:`close`; if the link to the broker
    breaks, iteration raises :class:`~seawall.ConnectionLost`. The runtime's
    dispatcher then subscribes again under its supervisor, which is how a
    consumer resumes by itself; the broken subscription's unsettled deliveries
    come again, to some member. Settling a delivery of a broken or closed
    subscription must not raise: it is ignored, since the delivery comes again.
    """

    def __aiter__(self) -> AsyncIterator[Delivery]: ...

    async def ack(self, delivery: Delivery) -> None:
        """Done with the delivery: it is not delivered to this group again."""
        ...

    async def nack(self, delivery: Delivery, *, delay: float = 0.0) -> None:
        """Not done: deliver it again, not before ``delay`` seconds from now."""
        ...

    async def stop_intake(self) -> None:
        """Take no more deliveries, the first step of a graceful stop.

        Iteration ends; deliveries handed out can still be settled. A nack from
        now on returns its message to the group and never to this subscription,
        in the order of the nacks, so a caller that nacks a key's messages in
        order keeps that order for the member that takes them next. What arrived
        but was not handed out comes again when the subscription closes (after
        what the caller nacked). Must not raise on a broken or closed subscription.
        """
        ...

    async def close(self) -> None:
        """Stop intake; deliveries not yet settled come again (to any member)."""
        ...


@runtime_checkable
class Transport(Protocol):
    """A connection to a broker."""

    @property
    def capabilities(self) -> Capabilities: ...

    async def declare(self, spec: ChannelSpec) -> None:
        """Create the channel if it does not exist; an existing one is kept as is."""
        ...

    async def delete(self, channel: str, *, group: str | None = None) -> None:
        """Delete ``channel``, its messages and every group of it; or only ``group`` of it.

        A deleted group loses its position and what it had not settled; the channel
        and its other groups go on. Deleting what does not exist does nothing. A
        subscription open on what is deleted ends with :class:`~seawall.ConnectionLost`
        (a dispatcher then subscribes again, which makes it anew): delete what
        nobody reads any more. A dead-letter channel (``<group>.dlq``) is a channel of
        its own, deleted by its own name.
        """
        ...

    async def publish(
        self,
        channel: str,
        message: Message,
        *,
        not_before: float | None = None,
        priority: int = 0,
    ) -> None:
        """Append ``message`` to ``channel``; return once it is as durable as declared.

        ``priority`` picks the level on a channel with priority levels (clamped to
        its range; ignored elsewhere and by transports whose
        :attr:`Capabilities.priorities` is 1).
        """
        ...

    async def subscribe(
        self,
        channel: str,
        *,
        group: str,
        prefetch: int = 64,
        start: Start = "earliest",
        idle_expiry: float | None = None,
    ) -> Subscription:
        """Join ``group`` on ``channel``; ``start`` and ``idle_expiry`` apply when the
        group is new.

        :class:`FromOffsets` and :class:`FromTime` need :attr:`Capabilities.replay`;
        other transports refuse them with :class:`~seawall.ConfigurationError`
        (see :func:`fixed_start`).

        ``idle_expiry``: seconds after which the broker may delete the group, its
        position and what it holds, once it has had no member (for a group that
        belongs to one process, so one killed without deleting it leaves nothing
        behind for long). Honoured where :attr:`Capabilities.group_expiry` says so,
        a little late rather than early (brokers sweep, some in whole seconds); a
        group made earlier without it keeps none. Choose it far above any pause of a
        live member (a reconnect, a partition hand-over): a group that expires is
        made anew, empty, when a member comes back.
        """
        ...

    async def close(self) -> None:
        """Close every subscription (unsettled deliveries come again) and the link."""
        ...
