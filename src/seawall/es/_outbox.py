"""The event log as the service's outbox: a relay publishes stored events to a channel.

Saving an aggregate and telling other services about it must not drift apart
(a crash between a database commit and a broker publish loses one or the
other). With event sourcing the log already *is* the outbox: the relay reads
it in global order and publishes each event to the service's event channel,
then moves its checkpoint. A crash between publish and checkpoint publishes
those events again, so delivery is at-least-once; the message id is the
event id, so subscribers (or the broker) can drop the repeats. One relay per
channel and store: a second one fails on the checkpoint instead of
interleaving.
"""

from __future__ import annotations

from datetime import UTC, datetime

from .._clock import Clock, SystemClock
from .._messages.envelope import Message
from .._messages.payload import _SCHEMA_PREFIX as SCHEMA_PREFIX
from .._transport import Transport
from ._records import EventStore, RecordedEvent

__all__ = ["OutboxRelay", "to_message"]


def to_message(record: RecordedEvent, source: str) -> Message:
    """The envelope for a stored event: same id, type, schema version and payload."""
    return Message(
        id=record.id,
        type=record.type,
        source=source,
        time=datetime.fromtimestamp(record.time, UTC),
        data=record.data,
        kind="event",
        dataschema=f"{SCHEMA_PREFIX}{record.type}:{record.type_version}",
        subject=record.stream,
        partitionkey=record.stream,
    )


class OutboxRelay:
    """Publishes a store's events, in order, to one channel; at-least-once."""

    def __init__(
        self,
        store: EventStore,
        transport: Transport,
        *,
        channel: str,
        source: str,
        batch: int = 500,
        poll: float = 0.2,
        clock: Clock | None = None,
    ) -> None:
        self.store = store
        self.transport = transport
        self.channel = channel
        self.source = source
        self.name = f"outbox:{channel}"
        """The checkpoint's name in the store."""
        self._batch = batch
        self._poll = poll
        self._clock = clock or SystemClock()

    async def step(self) -> int:
        """Publish the next batch after the checkpoint; the number of events published."""
        after = await self.store.checkpoint(self.name)
        records = await self.store.read_all(after, self._batch)
        for record in records:
            await self.transport.publish(self.channel, to_message(record, self.source))
        if records:
            await self.store.commit_projection(self.name, after, records[-1].position, ())
        return len(records)

    async def drain(self) -> int:
        """Publish everything stored so far; the number of events published."""
        total = 0
        while (done := await self.step()) > 0:
            total += done
        return total

    async def run(self) -> None:
        """Publish as events are stored, until cancelled."""
        while True:
            if await self.drain() == 0:
                await self._clock.sleep(self._poll)
