"""The group-commit benchmark's broker: a full channel stops the run, never hangs it.

``python -m benchmarks.group_commit`` publishes to a channel nobody consumes. With
the default bound of 100,000 messages and a server told to wait for room for ever,
its 64-publisher slices filled the channel and every publisher waited for an
acknowledgement that could never come.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from benchmarks.group_commit import CHANNEL, compare, open_store
from benchmarks.wire import PAYLOAD

from seawall import ChannelFull, Message, uuid7
from seawall._server.server import BrokerServer
from seawall.transports.seawall import SeawallTransport


def work() -> Message:
    return Message(id=uuid7(), type="bench.Work", source="bench", data=PAYLOAD)


async def test_a_full_channel_is_refused_at_once_not_waited_for(tmp_path: Path) -> None:
    backing = await open_store(str(tmp_path / "store"), "batch", max_messages=3)
    try:
        async with BrokerServer(backing, host="127.0.0.1") as server:
            client = await SeawallTransport.connect(f"seawall://127.0.0.1:{server.port}")
            try:
                for _ in range(3):
                    await client.publish(CHANNEL, work())
                async with asyncio.timeout(5):  # waiting for room would never end
                    try:
                        await client.publish(CHANNEL, work())
                    except ChannelFull:
                        pass
                    else:
                        raise AssertionError("a publish to a full channel was stored")
            finally:
                await client.close()
    finally:
        await backing.close()


def test_the_verdict_reads_the_median_pair_not_one_stretched_slice() -> None:
    # batch wins three pairs of four by 10%; in one pair another process's disk
    # writes stretched batch's fsyncs: the totals follow that pair, the median does not
    batch, always = [1100, 1100, 1100, 200], [1000, 1000, 1000, 1000]
    ratio, pairs = compare(batch, always)
    assert ratio == 3500 / 4000
    assert pairs == 1.1
    ratio, pairs = compare([900, 900, 900, 5000], always)  # and the other way round
    assert ratio > 1.0
    assert pairs == 0.9
