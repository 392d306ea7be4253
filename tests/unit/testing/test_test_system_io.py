"""TestSystem with real I/O in handlers: the virtual clock waits for work done by threads
and by seawall's own stores instead of jumping to the next deadline (issue 13, item 3)."""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from seawall import Command, Context, Document, Service
from seawall.es import SQLiteEventStore
from seawall.testing import TestSystem


class Work(Command, frozen=True):
    seconds: float


class Done(Document, frozen=True):
    took: float


def slow_service(run: str, store_path: Path | None = None) -> Service:
    service = Service("slow")
    pool = ThreadPoolExecutor(1)

    @service.command
    async def work(cmd: Work, ctx: Context) -> Done:
        started = time.monotonic()
        if run == "to_thread":
            await asyncio.to_thread(time.sleep, cmd.seconds)
        elif run == "own executor":
            await asyncio.get_running_loop().run_in_executor(pool, time.sleep, cmd.seconds)
        else:
            assert store_path is not None
            store = await SQLiteEventStore.open(store_path)  # its own (real) clock
            try:
                await store.query("SELECT 1")
                await asyncio.to_thread(time.sleep, cmd.seconds)
            finally:
                await store.close()
        return Done(took=time.monotonic() - started)

    return service


@pytest.mark.parametrize("run", ["to_thread", "own executor", "sqlite store"])
async def test_a_request_whose_handler_waits_on_a_thread_gets_its_reply(
    run: str, tmp_path: Path
) -> None:
    async with TestSystem(slow_service(run, tmp_path / "es.db")) as system:
        started = system.clock.time()
        done = await system.context().request("slow", Work(seconds=0.2), returns=Done, timeout=5.0)
        await system.settle()
    assert done.took >= 0.2
    # the virtual clock did not leap to the 5 s deadline while the thread worked
    assert system.clock.time() - started < 5.0


async def test_settle_says_what_is_still_busy_when_it_gives_up() -> None:
    service = Service("stuck")
    never = asyncio.Event()

    @service.command
    async def work(cmd: Work) -> None:
        await never.wait()  # waits on something that never comes

    async with TestSystem(service, raise_handler_errors=False) as system:
        await system.context().send("stuck", Work(seconds=0))
        with pytest.raises(TimeoutError, match=r"still busy after 60 s .*busy consumers: stuck"):
            await system.settle(timeout=60)
        never.set()


@pytest.mark.integration
async def test_a_handler_on_the_postgres_event_store_runs_under_the_virtual_clock() -> None:
    import uuid

    from tests.brokers import POSTGRES, require

    from seawall import uuid7
    from seawall.es import NewEvent
    from seawall.es.postgres import PostgresEventStore

    dsn = require(POSTGRES)
    store = await PostgresEventStore.open(dsn, prefix=f"t{uuid.uuid4().hex[:10]}_")
    service = Service("ledger")

    @service.command
    async def work(cmd: Work, ctx: Context) -> Done:
        started = time.monotonic()
        await store.query("SELECT pg_sleep($1)", cmd.seconds)  # the server takes its time
        await store.append(
            "s-1",
            [NewEvent(id=uuid7(), type="Noted", type_version="1.0.0", data=b"{}")],
            expected_version=0,
        )
        return Done(took=time.monotonic() - started)

    try:
        async with TestSystem(service) as system:
            done = await system.context().request(
                "ledger", Work(seconds=0.2), returns=Done, timeout=5.0
            )
            await system.settle()
        assert done.took >= 0.2
        assert [e.type for e in await store.read_stream("s-1")] == ["Noted"]
    finally:
        await store.drop()
        await store.close()
