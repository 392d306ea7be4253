"""The member a crash test kills: ``python -m seawall.testing._crash_child URL CHANNEL GROUP``.

It joins ``GROUP`` on ``CHANNEL`` of the transport at ``URL``, says ``ready`` once
subscribed, then says ``got <data>`` for every delivery and never settles one: when
the test kills it (kill -9), everything it was handed is unsettled.
"""

from __future__ import annotations

import asyncio
import sys

from ..transports import connect


async def main(url: str, channel: str, group: str) -> None:
    transport = connect(url)
    sub = await transport.subscribe(channel, group=group, prefetch=4)
    print("ready", flush=True)
    async for delivery in sub:
        print(f"got {delivery.message.data.decode()}", flush=True)


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:4]))
