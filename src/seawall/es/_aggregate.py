"""Aggregates and the repository that loads and saves them.

An :class:`Aggregate` changes only by applying events: a command method checks
the rules against the current state and calls :meth:`Aggregate.record` with
the events that follow; :meth:`Aggregate.apply` (written by you, a plain
method) moves the state on. Loading replays the stored events through the same
``apply``, so the state after a command and after a reload is the same::

    class Account(Aggregate):
        def __init__(self, id: str) -> None:
            super().__init__(id)
            self.balance = 0

        def deposit(self, amount: int) -> None:
            if amount <= 0:
                raise ValueError("deposit a positive amount")
            self.record(Deposited(amount=amount))

        def apply(self, event: Event) -> None:
            match event:
                case Deposited(amount=amount):
                    self.balance += amount

A subclass's ``__init__`` takes the id only and sets the initial state. To be
snapshotted, an aggregate names its snapshot struct in ``snapshot_type`` and
implements :meth:`Aggregate.snapshot` and :meth:`Aggregate.restore`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

from .._exceptions import AggregateNotFound, ConfigurationError
from .._messages.payload import Payload
from .._transport.ownership import Fence
from ._codec import EventCodec
from ._records import EventStore

__all__ = ["Aggregate", "Repository", "SnapshotPolicy"]

A = TypeVar("A", bound="Aggregate")


class Aggregate:
    """A consistency boundary whose state is the fold of its events."""

    category: ClassVar[str] = ""
    """Stream name prefix; the class name unless set. A stream is ``category-id``."""
    snapshot_type: ClassVar[type[Payload] | None] = None
    """The struct :meth:`snapshot` returns, or None if this aggregate is never snapshotted."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "category" not in cls.__dict__:
            cls.category = cls.__name__

    def __init__(self, id: str) -> None:
        self.id = id
        self.version = 0
        """Stream version this state reflects, pending events included."""
        self._pending: list[Payload] = []

    @classmethod
    def stream_for(cls, id: str) -> str:
        """The stream name of the aggregate with this id."""
        return f"{cls.category}-{id}"

    @property
    def stream(self) -> str:
        """This aggregate's stream name."""
        return self.stream_for(self.id)

    def apply(self, event: Payload) -> None:
        """Move the state on by one event; override it (no checks here: events are facts)."""
        raise NotImplementedError(f"{type(self).__qualname__} must define apply(event)")

    def record(self, *events: Payload) -> None:
        """Apply new events and keep them until the repository saves them."""
        for event in events:
            self.apply(event)
            self.version += 1
            self._pending.append(event)

    @property
    def pending(self) -> tuple[Payload, ...]:
        """Events recorded since the last load or save."""
        return tuple(self._pending)

    def snapshot(self) -> Payload:
        """The current state as an instance of ``snapshot_type``."""
        raise NotImplementedError(f"{type(self).__qualname__} must define snapshot()")

    def restore(self, snapshot: Payload) -> None:
        """Set the state from a snapshot made by :meth:`snapshot`."""
        raise NotImplementedError(f"{type(self).__qualname__} must define restore(snapshot)")


@dataclass(frozen=True, kw_only=True)
class SnapshotPolicy:
    """Take a snapshot each time a save carries a stream past a multiple of ``every``."""

    every: int = 100

    def __post_init__(self) -> None:
        if self.every < 1:
            raise ConfigurationError(f"SnapshotPolicy.every must be >= 1, got {self.every}")

    def due(self, before: int, after: int) -> bool:
        """Whether a save from version ``before`` to ``after`` should snapshot."""
        return after // self.every > before // self.every


class Repository:
    """Loads aggregates from an event store and saves their new events."""

    def __init__(
        self, store: EventStore, codec: EventCodec, *, snapshots: SnapshotPolicy | None = None
    ) -> None:
        self.store = store
        self.codec = codec
        self.snapshots = snapshots

    async def load(self, cls: type[A], id: str) -> A:
        """The aggregate's current state: latest snapshot (if any), then later events."""
        aggregate = cls(id)
        stream = aggregate.stream
        if self.snapshots is not None and cls.snapshot_type is not None:
            record, events = await self.store.read_from_snapshot(stream)
            if record is not None:
                aggregate.restore(self.codec.decode_snapshot(record))
                aggregate.version = record.version
        else:
            events = await self.store.read_stream(stream)
        if not events and aggregate.version == 0:
            raise AggregateNotFound(f"no events stored for {cls.__qualname__} {id!r} ({stream})")
        decode = self.codec.decode
        for recorded in events:
            aggregate.apply(decode(recorded))
        if events:
            aggregate.version = events[-1].version
        return aggregate

    async def save(self, aggregate: Aggregate, *, fence: Fence | None = None) -> int:
        """Append the pending events (optimistic concurrency); returns the new version.

        ``fence`` (a handler's ``ctx.fence``) makes the store refuse the append with
        :class:`~seawall.StaleEpoch` once another member owns the message's partition.
        """
        pending = aggregate._pending
        if not pending:
            return aggregate.version
        before = aggregate.version - len(pending)
        encode = self.codec.encode
        events = [encode(event) for event in pending]
        if fence is None:
            version = await self.store.append(aggregate.stream, events, before)
        else:
            version = await self.store.append(aggregate.stream, events, before, fence=fence)
        pending.clear()
        policy = self.snapshots
        if (
            policy is not None
            and type(aggregate).snapshot_type is not None
            and policy.due(before, version)
        ):
            await self.snapshot(aggregate)
        return version

    async def snapshot(self, aggregate: Aggregate) -> None:
        """Store the aggregate's state at its current version now."""
        if type(aggregate).snapshot_type is None:
            raise ConfigurationError(
                f"{type(aggregate).__qualname__} has no snapshot_type; set it (and define "
                "snapshot() and restore()) or use a Repository without a SnapshotPolicy"
            )
        state = aggregate.snapshot()
        await self.store.save_snapshot(
            self.codec.encode_snapshot(aggregate.stream, aggregate.version, state)
        )
