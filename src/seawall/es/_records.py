"""What an event store keeps, and the interface every backend implements.

An event store is an append-only log of events, split into *streams* (one per
aggregate) and ordered globally by *position*. The backends
(:mod:`seawall.es.sqlite`, :mod:`seawall.es.postgres`) store the same records
and pass the same conformance suite (:class:`seawall.testing.EventStoreConformance`).

Records hold encoded payloads: turning them into typed events (and upcasting
old versions) is the :class:`~seawall.es.EventCodec`'s job, above the store.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Sequence
from typing import Protocol

import msgspec

from .._transport.ownership import Fence

__all__ = [
    "EventStore",
    "NewEvent",
    "ProjectionWrite",
    "RecordedEvent",
    "SnapshotRecord",
]


class NewEvent(msgspec.Struct, frozen=True):
    """An event about to be appended: its id, type, schema version and encoded payload."""

    id: str
    type: str
    type_version: str
    data: bytes


class RecordedEvent(msgspec.Struct, frozen=True):
    """An event as stored: where it sits in its stream and in the global log."""

    position: int
    """Global position, from 1; a reader following the log never skips one."""
    stream: str
    version: int
    """Position in its stream, from 1."""
    id: str
    type: str
    type_version: str
    time: float
    """When it was appended, epoch seconds."""
    data: bytes


class SnapshotRecord(msgspec.Struct, frozen=True):
    """An aggregate's state at a stream version, encoded like an event."""

    stream: str
    version: int
    type: str
    type_version: str
    data: bytes


class ProjectionWrite(msgspec.Struct, frozen=True):
    """One SQL statement a projection wants run in its checkpoint's transaction."""

    sql: str
    params: tuple[object, ...]


class EventStore(Protocol):
    """An append-only event log with optimistic concurrency."""

    async def append(
        self,
        stream: str,
        events: Sequence[NewEvent],
        expected_version: int,
        *,
        fence: Fence | None = None,
    ) -> int:
        """Append ``events`` to ``stream`` if it is at ``expected_version`` (0: new stream).

        Returns the stream's new version. A stream at another version raises
        :class:`~seawall.ConcurrencyError` and nothing is stored. With a ``fence``
        (the partition lease a handler's message was read under, ``ctx.fence``), the
        store keeps the highest epoch seen for its scope, in the append's transaction,
        and refuses an older one with :class:`~seawall.StaleEpoch`: a member paused
        past its lease cannot write over its successor.
        """
        ...

    async def read_stream(self, stream: str, from_version: int = 1) -> list[RecordedEvent]:
        """The events of ``stream`` from ``from_version`` on, in order (empty if none)."""
        ...

    async def read_all(self, after: int = 0, limit: int = 1000) -> list[RecordedEvent]:
        """Up to ``limit`` events with a global position above ``after``, in order.

        Only events no reader can see appear *before* them are returned: an event
        committing late with a lower position is never skipped.
        """
        ...

    async def head(self) -> int:
        """The highest global position readers may see now (0 when empty)."""
        ...

    async def position_at(self, time: float) -> int:
        """The position just before the first event appended at or after ``time``."""
        ...

    def subscribe(
        self, after: int = 0, *, batch: int = 1000
    ) -> AsyncGenerator[RecordedEvent, None]:
        """Every event above ``after``: the stored ones (catch-up), then new ones (live)."""
        ...

    async def save_snapshot(self, snapshot: SnapshotRecord) -> None:
        """Keep ``snapshot`` as the stream's latest one (an older one is replaced)."""
        ...

    async def read_from_snapshot(
        self, stream: str
    ) -> tuple[SnapshotRecord | None, list[RecordedEvent]]:
        """The stream's latest snapshot (or None) and the events after it, read together."""
        ...

    async def load_snapshot(self, stream: str) -> SnapshotRecord | None:
        """The stream's latest snapshot, or None."""
        ...

    async def checkpoint(self, name: str) -> int:
        """The position projection ``name`` has processed up to (0 if never run)."""
        ...

    async def checkpoints(self) -> dict[str, int]:
        """Every projection's checkpoint, by name."""
        ...

    async def commit_projection(
        self,
        name: str,
        expected: int,
        position: int,
        writes: Sequence[ProjectionWrite],
        *,
        fence: Fence | None = None,
    ) -> None:
        """Run ``writes`` and move ``name``'s checkpoint from ``expected`` to ``position``,
        in one transaction (exactly-once). A checkpoint not at ``expected`` (another
        runner moved it) raises :class:`~seawall.ConcurrencyError` and nothing is written;
        a stale ``fence`` (as for :meth:`append`) raises :class:`~seawall.StaleEpoch`."""
        ...

    async def query(self, sql: str, *params: object) -> list[tuple[object, ...]]:
        """Rows of a read-only query on the store's database (a read model, say)."""
        ...

    async def close(self) -> None:
        """Release the database; pending appends finish first."""
        ...
