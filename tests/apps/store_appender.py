"""A child process for the crash tests: appends through StoreWriter until killed.

``python -m tests.apps.store_appender DIR POLICY`` opens the store in DIR,
continues channel ``crash`` partition 0 from its end, and keeps ``WINDOW``
appends in flight. Each offset is printed (and flushed) only once its future
resolved: every printed offset is an acknowledged append.
"""

from __future__ import annotations

import asyncio
import sys
from collections import deque
from pathlib import Path
from typing import cast

from seawall._broker.store import ChannelLayout, SyncPolicy
from seawall._broker.store_writer import StoreWriter

CHANNEL = "crash"
WINDOW = 256


def body_for(offset: int) -> bytes:
    """The exact body stored at ``offset``, so the checker can compare byte for byte."""
    return f"entry {offset} ".encode() * 6


async def append_forever(path: Path, policy: SyncPolicy) -> None:
    async with StoreWriter(path, policy=policy, window=0.002) as writer:
        if CHANNEL not in writer.recovered.channels:
            await writer.declare(CHANNEL, ChannelLayout(partitions=1, max_messages=10**9))
        bounds = writer.recovered.logs.get((CHANNEL, 0))
        offset = bounds.end if bounds else 0
        in_flight: deque[tuple[int, asyncio.Future[None]]] = deque()
        while True:
            if writer.full:
                await writer.room()
            ack = writer.append(CHANNEL, 0, offset, float(offset), body_for(offset))
            in_flight.append((offset, ack))
            offset += 1
            if len(in_flight) >= WINDOW:
                acked, oldest = in_flight.popleft()
                await oldest
                print(acked, flush=True)


if __name__ == "__main__":
    asyncio.run(append_forever(Path(sys.argv[1]), cast(SyncPolicy, sys.argv[2])))
