"""A Redis group member that takes deliveries and holds them, unsettled, until killed.

    python -m tests.apps.redis_holder URL PREFIX CHANNEL GROUP PARTITIONS COUNT

prints ``held <message id>`` for each delivery (flushed at once) and, after
``COUNT`` of them, waits for its SIGKILL: the member that dies without a word
of the reclaim tests.
"""

from __future__ import annotations

import asyncio
import sys

from seawall import ChannelSpec
from seawall.transports.redis import RedisTransport


async def main(
    url: str, prefix: str, channel: str, group: str, partitions: int, count: int
) -> None:
    transport = await RedisTransport.connect(url, prefix=prefix)
    await transport.declare(ChannelSpec(name=channel, partitions=partitions))
    sub = await transport.subscribe(channel, group=group, prefetch=2 * count)  # room to read all
    held = 0
    async for delivery in sub:
        sys.stdout.write(f"held {delivery.message.id}\n")
        sys.stdout.flush()
        held += 1
        if held == count:
            break
    await asyncio.Event().wait()  # until SIGKILL


if __name__ == "__main__":
    url, prefix, channel, group, partitions, count = sys.argv[1:7]
    asyncio.run(main(url, prefix, channel, group, int(partitions), int(count)))
