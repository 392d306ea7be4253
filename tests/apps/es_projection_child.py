"""A projection run in its own process, for the exactly-once kill test.

``python -m tests.apps.es_projection_child DB MARKER STALL_AT``: runs the
projection over the SQLite store ``DB`` until caught up, in batches of 40.
When it handles the event at position ``STALL_AT`` (mid-batch) it creates the
file ``MARKER`` and stops itself (SIGSTOP), so the parent can SIGKILL it there.
With ``STALL_AT`` 0 it never stalls: it creates ``MARKER`` when it handles its
first event and then paces itself (3 ms an event), so that kills at random
moments land while it works rather than while Python starts or after it ended.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

from seawall import Event
from seawall.es import (
    Batch,
    EventCodec,
    Projection,
    ProjectionRunner,
    RecordedEvent,
    SQLiteEventStore,
)


class Tick(Event, frozen=True):
    type_name = "test.Tick"
    n: int


class Applied(Projection):
    name = "applied"
    handles = (Tick,)

    def __init__(self, stall_at: int, marker: Path) -> None:
        self.stall_at = stall_at
        self.marker = marker

    def setup(self, batch: Batch) -> None:
        batch.execute("CREATE TABLE IF NOT EXISTS applied (position INTEGER, n INTEGER)")
        batch.execute("CREATE TABLE IF NOT EXISTS total (k INTEGER PRIMARY KEY, n INTEGER)")
        batch.execute("INSERT OR IGNORE INTO total VALUES (1, 0)")

    async def handle(self, event: object, record: RecordedEvent, batch: Batch) -> None:
        assert isinstance(event, Tick)
        batch.execute("INSERT INTO applied VALUES (?, ?)", record.position, event.n)
        batch.execute("UPDATE total SET n = n + 1 WHERE k = 1")
        if record.position == self.stall_at:
            self.marker.touch()
            os.kill(os.getpid(), signal.SIGSTOP)  # the parent kills us here, mid-batch
        elif self.stall_at == 0:
            self.marker.touch()  # working now: the parent's random kill may come
            await asyncio.sleep(0.003)


async def main(db: str, marker: str, stall_at: int) -> None:
    async with await SQLiteEventStore.open(db) as store:
        runner = ProjectionRunner(
            store, EventCodec(Tick), Applied(stall_at, Path(marker)), batch=40
        )
        await runner.catch_up()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
