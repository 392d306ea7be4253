"""Dead letters on every transport: listed without being consumed, redriven once, purged.

One scenario per row of the conformance matrix's transports (memory, embedded,
seawall://, NATS, RabbitMQ, Redis), through the same code the ``seawall dlq``
commands and the console run (:class:`seawall.console.DeadLetterView`): a
service gives up on two commands; reading the dead letters twice shows both
both times; after the cause is fixed, redriving one of them twice delivers it
once, with its id and the delivery count started again; purge drops the other.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from tests.brokers import unique
from tests.conformance.test_matrix import (
    Setup,
    _memory_backing,
    embedded,
    memory,
    nats,
    rabbitmq,
    redis,
    served,
)

from seawall import Command, Context, RetryPolicy, Service, System, Transport
from seawall._messages.envelope import DLQ_REASON
from seawall.console import DeadLetterView, Filter
from seawall.console.deadletters import REDRIVE_OF, record_channel

# each row with the quiet period after which a view has seen every dead letter there is
ROWS = [
    pytest.param((memory(), 0.1), id="memory"),
    pytest.param((embedded(sync="batch"), 0.1), id="embedded"),
    pytest.param((served(_memory_backing), 0.2), id="seawall-tcp"),
    pytest.param((nats(), 0.5), id="nats", marks=pytest.mark.integration),
    pytest.param((rabbitmq(), 0.5), id="rabbitmq", marks=pytest.mark.integration),
    pytest.param((redis(), 0.5), id="redis", marks=pytest.mark.integration),
]


class Charge(Command, frozen=True):
    type_name = "dlq_test.Charge"

    n: int


@pytest_asyncio.fixture(params=ROWS)
async def transport(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[tuple[Transport, float]]:
    setup: Setup = request.param[0]
    async with setup(tmp_path) as factory:
        made = await factory.make()
        try:
            yield made, request.param[1]
        finally:
            await made.close()


async def _eventually(check: object, seconds: float = 10.0) -> None:
    async with asyncio.timeout(seconds):
        while not check():  # type: ignore[operator]  # noqa: ASYNC110
            await asyncio.sleep(0.02)


async def test_dead_letters_are_read_without_consuming_then_redriven_once_and_purged(
    transport: tuple[Transport, float],
) -> None:
    link, quiet = transport
    name = unique("dlq")
    service = Service(name)
    broken = {1, 2}
    handled: list[tuple[int, str, bool]] = []

    @service.subscribe(name, retry=RetryPolicy(max_attempts=1))
    async def charge(cmd: Charge, ctx: Context) -> None:
        if cmd.n in broken:
            raise ValueError(f"card {cmd.n} is not set up yet")
        assert ctx.message is not None
        handled.append((cmd.n, ctx.message.id, DLQ_REASON in ctx.message.headers))

    dlq = f"{name}.dlq"
    try:
        async with System(service, transport=link) as system:
            ctx = system.context("test")
            for n in (1, 2):
                await ctx.send(name, Charge(n=n))
            await _eventually(lambda: sum(s.dead_lettered for s in system.stats().values()) == 2)

            for _ in range(2):  # reading twice: reading consumed nothing
                async with DeadLetterView(link, dlq) as view:
                    letters = await view.settle_in(quiet=quiet)
                assert sorted(x.message.data for x in letters) == [b'{"n":1}', b'{"n":2}']
            assert {x.reason for x in letters} == {"handler-error"}
            assert {x.origin for x in letters} == {name}
            assert "card 1 is not set up yet" in " ".join(x.error for x in letters)
            first = next(x for x in letters if x.message.data == b'{"n":1}')

            broken.clear()  # the cause is fixed
            only_first = Filter(ids=frozenset({first.message.id}))
            sent = []
            for _ in range(2):
                async with DeadLetterView(link, dlq) as view:
                    await view.settle_in(quiet=quiet)
                    sent.append(await view.redrive(only_first, by="test"))
            assert [len(s) for s in sent] == [1, 0], "a second redrive sent it again"
            await _eventually(lambda: len(handled) >= 1)
            await asyncio.sleep(quiet)  # a second delivery would arrive now
            assert handled == [(1, first.message.id, False)], "once, same id, no dead-letter marks"

            async with DeadLetterView(link, dlq) as view:
                left = await view.settle_in(quiet=quiet)
                assert [x.message.data for x in left] == [b'{"n":2}']
                assert [x.message.data for x in await view.purge(Filter())] == [b'{"n":2}']
            async with DeadLetterView(link, dlq) as view:
                assert await view.settle_in(quiet=quiet, first=2 * quiet) == []
            async with DeadLetterView(link, record_channel(dlq)) as records:
                kept = await records.settle_in(quiet=quiet)
            assert [x.message.headers[REDRIVE_OF] for x in kept] == [first.key]
    finally:
        for channel in (name, dlq, record_channel(dlq)):
            await link.delete(channel)
