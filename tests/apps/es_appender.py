"""``python -m tests.apps.es_appender DB NAME COUNT``: append COUNT events, one at a time,
to stream NAME of the SQLite event store in DB (for the many-processes test)."""

from __future__ import annotations

import asyncio
import sys

from seawall.es import SQLiteEventStore
from seawall.testing._event_store import new_events


async def main(db: str, name: str, count: int) -> None:
    async with await SQLiteEventStore.open(db) as store:
        for version in range(count):
            await store.append(name, new_events(1), version)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
