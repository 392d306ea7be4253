"""CQRS projections: read models fed from the global log, with their checkpoints.

A :class:`Projection` turns events into a read model. The runner reads the log
in batches above the projection's checkpoint; for each batch the projection
queues SQL statements on a :class:`Batch`, and the store runs them *and* moves
the checkpoint in one transaction. A read model in the event store's own
database is therefore updated exactly once per event, whatever crashes: a batch
is either wholly applied with its checkpoint, or not at all and read again.

A read model elsewhere (another database, a cache, a search index) is written
by the handler itself; the checkpoint still moves only after the handler
returned, so after a crash the events since the last checkpoint are handled
again: at-least-once, and such handlers must be idempotent (e.g. upsert by
event id or position).

Runners catch up, then follow the log live; ``rebuild`` starts a projection
over from position 0 or from a time; ``status`` reports the lag.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

from .._messages.payload import Payload
from .._transport.ownership import Fence
from ._codec import EventCodec
from ._records import EventStore, ProjectionWrite, RecordedEvent

__all__ = ["Batch", "Progress", "Projection", "ProjectionRunner", "ProjectionStatus"]

Progress = Callable[[int, int], None]
"""Called as ``progress(done, total)`` while a projection catches up."""


class Batch:
    """SQL statements to run with the checkpoint of the current batch (exactly-once)."""

    __slots__ = ("writes",)

    def __init__(self) -> None:
        self.writes: list[ProjectionWrite] = []

    def execute(self, sql: str, *params: object) -> None:
        """Queue one statement, written in the store database's SQL and parameter style."""
        self.writes.append(ProjectionWrite(sql, params))


class Projection:
    """A read model fed by events; subclass it and list the event types it handles."""

    name: ClassVar[str] = ""
    """The checkpoint's name; must be unique in the store."""
    handles: ClassVar[tuple[type[Payload], ...]] = ()
    """Event classes this projection reads; others are skipped without being decoded."""

    def setup(self, batch: Batch) -> None:
        """Queue the statements that create the read model (run before each start)."""

    def reset(self, batch: Batch, from_position: int) -> None:
        """Queue the statements that clear what a rebuild from ``from_position`` replaces."""

    async def handle(self, event: Payload, record: RecordedEvent, batch: Batch) -> None:
        """Apply one event to the read model."""
        raise NotImplementedError(f"{type(self).__qualname__} must define handle()")


@dataclass(frozen=True)
class ProjectionStatus:
    """Where a projection stands against the log."""

    name: str
    checkpoint: int
    head: int

    @property
    def lag(self) -> int:
        """Events stored but not yet processed."""
        return max(0, self.head - self.checkpoint)


class ProjectionRunner:
    """Runs one projection against one store."""

    def __init__(
        self,
        store: EventStore,
        codec: EventCodec,
        projection: Projection,
        *,
        batch: int = 1000,
        fence: Callable[[], Fence | None] | None = None,
    ) -> None:
        self.store = store
        self.fence = fence
        """Says the fence of the ownership this runner runs under (a partition lease), if
        any: a checkpoint commit under a stale one is refused (:class:`~seawall.StaleEpoch`)."""
        self.codec = codec
        self.projection = projection
        self.name = projection.name or type(projection).__name__
        self._batch = batch
        self._wanted = frozenset(cls.type_name for cls in projection.handles)
        self._ready = False

    async def status(self) -> ProjectionStatus:
        """The checkpoint, the head of the log, and so the lag."""
        return ProjectionStatus(
            self.name, await self.store.checkpoint(self.name), await self.store.head()
        )

    async def _setup(self) -> None:
        if not self._ready:
            batch = Batch()
            self.projection.setup(batch)
            at = await self.store.checkpoint(self.name)
            await self._commit(at, at, batch.writes)
            self._ready = True

    async def _commit(self, after: int, position: int, writes: list[ProjectionWrite]) -> None:
        fence = None if self.fence is None else self.fence()
        if fence is None:
            await self.store.commit_projection(self.name, after, position, writes)
        else:
            await self.store.commit_projection(self.name, after, position, writes, fence=fence)

    async def step(self) -> int:
        """Process one batch above the checkpoint; the number of events read."""
        await self._setup()
        read, _ = await self._step(await self.store.checkpoint(self.name))
        return read

    async def _step(self, after: int) -> tuple[int, int]:
        """Handle and commit the batch above ``after``: events read, new checkpoint."""
        records = await self.store.read_all(after, self._batch)
        if not records:
            return 0, after
        batch = Batch()
        wanted, decode, handle = self._wanted, self.codec.decode, self.projection.handle
        for record in records:
            if record.type in wanted:
                await handle(decode(record), record, batch)
        # fails with ConcurrencyError if another runner moved the checkpoint meanwhile
        position = records[-1].position
        await self._commit(after, position, batch.writes)
        return len(records), position

    async def catch_up(self, progress: Progress | None = None) -> int:
        """Process until the head of the log as it was on entry; events read."""
        await self._setup()
        after = await self.store.checkpoint(self.name)
        total, done = max(0, await self.store.head() - after), 0
        while True:
            read, after = await self._step(after)
            done += read
            if progress is not None:
                progress(min(done, total), max(total, done))
            if read < self._batch:
                return done

    async def run(self) -> None:
        """Catch up, then follow the log live until cancelled."""
        while True:
            if await self.catch_up() == 0:
                await self._next_event()

    async def _next_event(self) -> None:
        # the store's subscription wakes at once for appends in this process, and
        # polls for those of other processes
        after = await self.store.checkpoint(self.name)
        async with contextlib.aclosing(self.store.subscribe(after, batch=1)) as events:
            async for _ in events:
                return

    async def rebuild(
        self,
        *,
        from_position: int = 0,
        from_time: float | None = None,
        progress: Progress | None = None,
    ) -> int:
        """Start over from a position (0: the whole log) or a time, and catch up."""
        await self._setup()
        if from_time is not None:
            from_position = await self.store.position_at(from_time)
        batch = Batch()
        self.projection.reset(batch, from_position)
        at = await self.store.checkpoint(self.name)
        await self.store.commit_projection(self.name, at, from_position, batch.writes)
        return await self.catch_up(progress)
