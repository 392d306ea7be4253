"""Sagas in an event store: reading and appending instance streams, and what tools show.

Any :class:`~seawall.es.EventStore` holds sagas (SQLite by default,
PostgreSQL for a shared database): each instance is a stream
``saga:<name>:<id>`` of the events in :mod:`seawall.sagas._events`.
:func:`status` folds every saga stream of a store into :class:`SagaView` s,
without the sagas' code, for ``seawall sagas status`` and the console.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, cast

from .._clock import Clock, SystemClock
from ..es import EventCodec, EventStore, RecordedEvent
from ._events import EVENT_TYPES, SagaEvent
from ._state import SagaState, Status

__all__ = ["SagaLog", "SagaView", "status"]

PREFIX = "saga:"
STUCK_AFTER = 60.0
"""Seconds without progress after which :func:`status` calls a saga stuck."""

View = Literal["running", "compensating", "stuck", "completed", "rejected"]


class SagaLog:
    """Saga streams in ``store``: load an instance, append its events, fold them all."""

    def __init__(self, store: EventStore) -> None:
        self.store = store
        self.codec = EventCodec(*EVENT_TYPES)

    async def load(self, stream: str) -> SagaState | None:
        """The instance stored in ``stream``, or None if it never started."""
        records = await self.store.read_stream(stream)
        if not records:
            return None
        state = SagaState()
        for record in records:
            self.fold(state, record)
        return state

    def fold(self, state: SagaState, record: RecordedEvent) -> None:
        """Apply one stored event to ``state``."""
        state.apply(cast(SagaEvent, self.codec.decode(record)), record.time)

    async def append(self, state: SagaState, events: Sequence[SagaEvent]) -> None:
        """Append ``events``, which took ``state`` to its version, to its stream."""
        if events:
            new = [self.codec.encode(e) for e in events]
            await self.store.append(state.stream, new, state.version - len(events))

    async def scan(self) -> dict[str, SagaState]:
        """Every saga instance in the store, by stream (reads the whole log)."""
        states: dict[str, SagaState] = {}
        after = 0
        while records := await self.store.read_all(after, 2000):
            for record in records:
                if record.stream.startswith(PREFIX):
                    self.fold(states.setdefault(record.stream, SagaState()), record)
            after = records[-1].position
        return states


@dataclass(frozen=True)
class SagaView:
    """One saga instance as tools show it."""

    saga: str
    id: str
    status: Status
    stuck: bool
    """Not finished and no progress for ``stuck_after`` seconds, or past its timeout."""
    step: str
    """The step under way (or the last one), by name."""
    attempt: int
    reason: str
    started_at: float
    updated_at: float
    progressed_at: float
    deadline: float | None
    compensated: tuple[str, ...]
    """Steps compensated, in the order it happened."""
    events: int

    @property
    def state(self) -> View:
        """``stuck`` for a stuck saga, else its status."""
        return "stuck" if self.stuck else self.status

    @classmethod
    def of(cls, state: SagaState, *, now: float, stuck_after: float) -> SagaView:
        """The view of ``state`` at ``now``."""
        idle = now - state.progressed_at >= stuck_after
        late = state.status == "running" and state.deadline is not None and now > state.deadline
        index = state.current if not state.finished else max(state.names, default=0)
        return cls(
            saga=state.saga,
            id=state.id,
            status=state.status,
            stuck=not state.finished and (idle or late),
            step=state.names.get(index, ""),
            attempt=state.attempt,
            reason=state.reason,
            started_at=state.started_at,
            updated_at=state.updated_at,
            progressed_at=state.progressed_at,
            deadline=state.deadline,
            compensated=tuple(state.names.get(i, str(i)) for i in state.compensated),
            events=state.version,
        )


async def status(
    store: EventStore, *, stuck_after: float = STUCK_AFTER, clock: Clock | None = None
) -> list[SagaView]:
    """Every saga in ``store``, oldest first: running, stuck and finished ones."""
    now = (clock or SystemClock()).time()
    states = await SagaLog(store).scan()
    views = [SagaView.of(s, now=now, stuck_after=stuck_after) for s in states.values()]
    return sorted(views, key=lambda v: (v.started_at, v.saga, v.id))
