"""Event sourcing: aggregates, event stores, snapshots, upcasting, projections, outbox.

The state layer of seawall. A service keeps its state as an append-only log of
events in an :class:`EventStore` (:class:`~seawall.es.sqlite.SQLiteEventStore`
by default, :class:`~seawall.es.postgres.PostgresEventStore` for a shared
database), rebuilds it by replay through a :class:`Repository`, feeds read
models with :class:`Projection` s, and publishes its events to other services
with an :class:`OutboxRelay`. See ``docs/event-sourcing.md``.

Its errors (:class:`EventStoreError` and below it :class:`ConcurrencyError`,
:class:`AggregateNotFound`, :class:`EventLoadError`) belong to the one exception
tree of :mod:`seawall._exceptions`; they are importable from here and from ``seawall``.
"""

from __future__ import annotations

from .._exceptions import (
    AggregateNotFound,
    ConcurrencyError,
    EventLoadError,
    EventStoreError,
    StaleEpoch,
)
from .._transport.ownership import Fence
from ._aggregate import Aggregate, Repository, SnapshotPolicy
from ._codec import EventCodec, Upcaster
from ._commands import CommandLog, CommandOutcome, ReplaySink, SideEffect
from ._open import ProjectionSet, open_store
from ._outbox import OutboxRelay, to_message
from ._projection import Batch, Progress, Projection, ProjectionRunner, ProjectionStatus
from ._records import EventStore, NewEvent, ProjectionWrite, RecordedEvent, SnapshotRecord
from .sqlite import SQLiteEventStore

__all__ = [
    "Aggregate",
    "AggregateNotFound",
    "Batch",
    "CommandLog",
    "CommandOutcome",
    "ConcurrencyError",
    "EventCodec",
    "EventLoadError",
    "EventStore",
    "EventStoreError",
    "Fence",
    "NewEvent",
    "OutboxRelay",
    "Progress",
    "Projection",
    "ProjectionRunner",
    "ProjectionSet",
    "ProjectionStatus",
    "ProjectionWrite",
    "RecordedEvent",
    "ReplaySink",
    "Repository",
    "SQLiteEventStore",
    "SideEffect",
    "SnapshotPolicy",
    "SnapshotRecord",
    "StaleEpoch",
    "Upcaster",
    "open_store",
    "to_message",
]
