"""Sagas kept in a PostgreSQL event store: the same runs as on SQLite, and a resume."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from test_sagas_runner import BOOK, Ledger, Trip, participants
from tests.brokers import POSTGRES, require

from seawall.es.postgres import PostgresEventStore
from seawall.sagas import SagaRunner, status
from seawall.testing import TestSystem

pytestmark = pytest.mark.integration


async def test_sagas_complete_compensate_and_resume_on_postgres() -> None:
    store = await PostgresEventStore.open(require(POSTGRES), prefix=f"t{uuid.uuid4().hex[:10]}_")
    ledger = Ledger()
    try:
        async with TestSystem(*participants(ledger), raise_handler_errors=False) as system:
            clock = system.clock
            # a runner that stored a start and sent its first command, then stopped
            dead = SagaRunner(store, system.transport, BOOK, service="travel", clock=clock)
            await dead.start(BOOK, "p0", Trip(trip="p0", amount=1))
            runner = SagaRunner(store, system.transport, BOOK, service="travel", clock=clock)
            async with asyncio.TaskGroup() as tasks:
                task = tasks.create_task(runner.run())
                for trip, amount in (("p1", 10), ("p2", 999)):
                    await runner.start(BOOK, trip, Trip(trip=trip, amount=amount))
                views = [await runner.wait(BOOK, t) for t in ("p0", "p1", "p2")]
                task.cancel()
            assert [v.status for v in views] == ["completed", "completed", "rejected"]
            assert {v.id: v.state for v in await status(store)} == {
                "p0": "completed",
                "p1": "completed",
                "p2": "rejected",
            }
        assert ledger.seen.count("unreserve p2") == 1
        assert ledger.seen.count("confirm p0") == 1
    finally:
        await store.drop()
        await store.close()
