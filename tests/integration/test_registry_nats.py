"""On NATS, seawall instances answer NATS micro's discovery requests (a real server).

A request on ``$SRV.PING`` (``INFO``, ``STATS``; and the ``.<name>`` and
``.<name>.<id>`` forms) is answered by every running seawall instance in
micro's JSON shapes, which nats-py's own micro types read back.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

import nats
import pytest
from nats.aio.client import Client
from nats.micro.service import ServiceInfo, ServicePing, ServiceStats
from tests.brokers import NATS, require, unique

from seawall import Command, Document, Service, System
from seawall.transports.nats.micro import micro_name


class Ask(Command, frozen=True):
    n: int


class Told(Document, frozen=True):
    n: int


def answering(name: str) -> Service:
    service = Service(name)

    @service.command
    async def ask(cmd: Ask) -> Told:
        return Told(n=cmd.n)

    return service


async def ask_all(client: Client, subject: str, seconds: float = 0.5) -> list[dict[str, Any]]:
    """Every answer to one request on ``subject`` within ``seconds``."""
    inbox = client.new_inbox()
    sub = await client.subscribe(inbox)
    await client.publish(subject, b"", reply=inbox)
    answers: list[dict[str, Any]] = []
    with contextlib.suppress(TimeoutError, nats.errors.TimeoutError):
        async with asyncio.timeout(seconds):
            async for msg in sub.messages:
                if msg.data:  # not the server's "no responders" status
                    answers.append(json.loads(msg.data))
    await sub.unsubscribe()
    return answers


@contextlib.asynccontextmanager
async def running(name: str) -> AsyncIterator[System]:
    url = require(NATS)
    system = System(answering(name), transport=url)
    try:
        async with system:
            yield system
    finally:
        async with System(transport=url, registry=False) as cleaner:
            for channel in (name, f"{name}.dlq"):
                await cleaner.transport.delete(channel)


@pytest.mark.slow
async def test_seawall_instances_answer_nats_micro_ping_info_and_stats() -> None:
    name = unique("micro")
    async with running(name) as system:
        assert (await system.context().request(name, Ask(n=1), returns=Told)).n == 1
        client = await nats.connect(require(NATS))
        try:
            await asyncio.sleep(1.2)  # a beat after the request carries its count
            pings = [ServicePing.from_dict(a) for a in await ask_all(client, "$SRV.PING")]
            assert (micro_name(name), system.instance) in {(p.name, p.id) for p in pings}
            infos = await ask_all(client, f"$SRV.INFO.{micro_name(name)}")
            (info,) = [ServiceInfo.from_dict(a) for a in infos]
            assert info.id == system.instance
            assert [e.queue_group for e in info.endpoints] == [name]
            stats_subject = f"$SRV.STATS.{micro_name(name)}.{system.instance}"
            (stats,) = [ServiceStats.from_dict(a) for a in await ask_all(client, stats_subject)]
            assert stats.endpoints[0].num_requests == 1
            assert stats.endpoints[0].average_processing_time > 0
        finally:
            await client.close()
    client = await nats.connect(require(NATS))
    try:  # a stopped system answers no more
        assert await ask_all(client, f"$SRV.PING.{micro_name(name)}") == []
    finally:
        await client.close()
