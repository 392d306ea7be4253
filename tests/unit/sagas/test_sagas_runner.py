"""Sagas run by a SagaRunner over the test system, on the virtual clock.

Participants are real services; the store is a real SQLite event store. What
each participant did is kept in ``Ledger`` lists, so the tests can check the
order of actions and compensations as the participants saw them.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import msgspec

from seawall import Command, Context, Document, RetryPolicy, Service
from seawall.es import SQLiteEventStore
from seawall.sagas import Saga, SagaRunner, SagaView, Step, status
from seawall.testing import TestSystem


class Reserve(Command, frozen=True):
    type_name: ClassVar[str] = "test.Reserve"
    trip: str


class Unreserve(Command, frozen=True):
    type_name: ClassVar[str] = "test.Unreserve"
    trip: str


class Charge(Command, frozen=True):
    type_name: ClassVar[str] = "test.Charge"
    trip: str
    amount: int


class Refund(Command, frozen=True):
    type_name: ClassVar[str] = "test.Refund"
    trip: str


class Confirm(Command, frozen=True):
    type_name: ClassVar[str] = "test.Confirm"
    trip: str


class Charged(Document, frozen=True):
    type_name: ClassVar[str] = "test.Charged"
    trip: str
    ok: bool


class Trip(msgspec.Struct, frozen=True):
    trip: str
    amount: int


class OutOfStock(Exception):
    """A domain error a participant raises; the saga declares it a failure."""


@dataclass
class Ledger:
    """What the participants did, in order, and how they are told to misbehave."""

    seen: list[str] = field(default_factory=list)
    silent: dict[str, int] = field(default_factory=dict)
    """Command type -> how many deliveries to take without answering (a lost reply)."""
    broken: dict[str, int] = field(default_factory=dict)
    """Command type -> how many deliveries to fail with a non-domain error."""
    out_of_stock: bool = False

    def hold(self, name: str) -> bool:
        if self.silent.get(name, 0) > 0:
            self.silent[name] -= 1
            return True
        return False


def participants(ledger: Ledger) -> tuple[Service, Service]:
    hotel = Service("hotel", retry=RetryPolicy(max_attempts=1), expired="drop")
    bank = Service("bank", retry=RetryPolicy(max_attempts=1), expired="drop")

    @hotel.command
    async def reserve(cmd: Reserve, ctx: Context) -> None:
        if ledger.hold("reserve"):
            await ctx.sleep(3600)  # never answers in time (cancelled at the deadline)
        if ledger.out_of_stock:
            raise OutOfStock(f"no room for {cmd.trip}")
        ledger.seen.append(f"reserve {cmd.trip}")

    @hotel.command
    async def unreserve(cmd: Unreserve) -> None:
        if ledger.broken.get("unreserve", 0) > 0:
            ledger.broken["unreserve"] -= 1
            raise RuntimeError("hotel database away")
        ledger.seen.append(f"unreserve {cmd.trip}")

    @hotel.command
    async def confirm(cmd: Confirm) -> None:
        ledger.seen.append(f"confirm {cmd.trip}")

    @bank.command
    async def charge(cmd: Charge, ctx: Context) -> Charged:
        if ledger.hold("charge"):
            await ctx.sleep(3600)
        ledger.seen.append(f"charge {cmd.trip}")
        return Charged(trip=cmd.trip, ok=cmd.amount <= 100)

    @bank.command
    async def refund(cmd: Refund) -> None:
        ledger.seen.append(f"refund {cmd.trip}")

    return hotel, bank


FAST = RetryPolicy(max_attempts=3, initial_backoff=0.5, max_backoff=1.0, jitter=0.0)

BOOK = Saga(
    "book",
    Trip,
    timeout=60.0,
    steps=[
        Step(
            "reserve",
            to="hotel",
            send=lambda t: Reserve(trip=t.trip),
            fails_on=("OutOfStock",),
            compensate=lambda t, why: Unreserve(trip=t.trip),
            timeout=2.0,
            retry=FAST,
        ),
        Step(
            "charge",
            to="bank",
            send=lambda t: Charge(trip=t.trip, amount=t.amount),
            replies=(Charged,),
            check=lambda t, r: None if r.ok else "card declined",
            compensate=lambda t, why: Refund(trip=t.trip),
            timeout=2.0,
            retry=FAST,
        ),
        Step("confirm", to="hotel", send=lambda t: Confirm(trip=t.trip), retriable=True),
    ],
)


@asynccontextmanager
async def running(tmp_path: Path, ledger: Ledger) -> AsyncIterator[tuple[TestSystem, SagaRunner]]:
    async with TestSystem(*participants(ledger), raise_handler_errors=False) as system:
        store = await SQLiteEventStore.open(tmp_path / "sagas.db", clock=system.clock)
        runner = SagaRunner(store, system.transport, BOOK, service="travel", clock=system.clock)
        try:
            async with asyncio.TaskGroup() as tasks:
                task = tasks.create_task(runner.run())
                yield system, runner
                task.cancel()
        finally:
            await store.close()


async def book(runner: SagaRunner, trip: str, amount: int) -> SagaView:
    await runner.start(BOOK, trip, Trip(trip=trip, amount=amount))
    return await runner.wait(BOOK, trip)


async def test_a_saga_that_succeeds_runs_every_step_in_order(tmp_path: Path) -> None:
    ledger = Ledger()
    async with running(tmp_path, ledger) as (_, runner):
        view = await book(runner, "t1", 50)
    assert view.status == "completed"
    assert ledger.seen == ["reserve t1", "charge t1", "confirm t1"]


async def test_a_domain_failure_compensates_completed_steps_in_reverse(tmp_path: Path) -> None:
    ledger = Ledger()
    async with running(tmp_path, ledger) as (_, runner):
        view = await book(runner, "t2", 500)  # declined: the check says so
    assert (view.status, view.reason) == ("rejected", "card declined")
    # the charge did not happen (a domain failure): only the reservation is undone
    assert ledger.seen == ["reserve t2", "charge t2", "unreserve t2"]
    assert view.compensated == ("reserve",)


async def test_a_remote_error_of_a_declared_kind_compensates_without_retry(tmp_path: Path) -> None:
    ledger = Ledger(out_of_stock=True)
    async with running(tmp_path, ledger) as (_, runner):
        view = await book(runner, "t3", 50)
    assert view.status == "rejected"
    assert "OutOfStock" in view.reason
    assert ledger.seen == []  # reserve failed before acting; nothing to compensate


async def test_a_lost_reply_is_retried_after_the_step_timeout(tmp_path: Path) -> None:
    ledger = Ledger(silent={"charge": 1})
    async with running(tmp_path, ledger) as (system, runner):
        started = system.clock.time()
        view = await book(runner, "t4", 50)
        took = system.clock.time() - started
    assert view.status == "completed"
    assert ledger.seen == ["reserve t4", "charge t4", "confirm t4"]
    assert took >= 2.0  # one step timeout passed on the virtual clock before the retry


async def test_a_step_that_never_answers_fails_and_is_compensated_too(tmp_path: Path) -> None:
    ledger = Ledger(silent={"charge": 10})
    async with running(tmp_path, ledger) as (_, runner):
        view = await book(runner, "t5", 50)
    assert view.status == "rejected"
    assert "no reply after 3 attempts" in view.reason
    # unknown outcome: the charge is compensated as well, then the reservation
    assert ledger.seen == ["reserve t5", "refund t5", "unreserve t5"]
    assert view.compensated == ("charge", "reserve")


async def test_compensations_are_retried_until_they_answer(tmp_path: Path) -> None:
    ledger = Ledger(broken={"unreserve": 2})
    async with running(tmp_path, ledger) as (_, runner):
        view = await book(runner, "t6", 500)
    assert view.status == "rejected"
    assert ledger.seen == ["reserve t6", "charge t6", "unreserve t6"]


async def test_the_saga_timeout_compensates_on_the_virtual_clock(tmp_path: Path) -> None:
    slow = Saga("book", Trip, timeout=3.0, steps=BOOK.steps)
    ledger = Ledger(silent={"charge": 10})
    async with TestSystem(*participants(ledger), raise_handler_errors=False) as system:
        store = await SQLiteEventStore.open(tmp_path / "s.db", clock=system.clock)
        runner = SagaRunner(store, system.transport, slow, service="travel", clock=system.clock)
        async with asyncio.TaskGroup() as tasks:
            task = tasks.create_task(runner.run())
            await runner.start(slow, "t7", Trip(trip="t7", amount=5))
            view = await runner.wait(slow, "t7")
            task.cancel()
        await store.close()
    assert view.status == "rejected"
    assert view.reason == "saga timed out after 3.0 s"
    assert ledger.seen == ["reserve t7", "refund t7", "unreserve t7"]


async def test_a_second_start_is_the_same_instance(tmp_path: Path) -> None:
    ledger = Ledger()
    async with running(tmp_path, ledger) as (_, runner):
        await runner.start(BOOK, "t8", Trip(trip="t8", amount=1))
        again = await runner.start(BOOK, "t8", Trip(trip="t8", amount=999))
        view = await runner.wait(BOOK, "t8")
    assert again.id == "t8"
    assert view.status == "completed"
    assert ledger.seen.count("reserve t8") == 1


async def test_repeated_and_late_replies_change_nothing(tmp_path: Path) -> None:
    ledger = Ledger()
    async with running(tmp_path, ledger) as (system, runner):
        view = await book(runner, "t9", 50)
        replies = system.messages(runner.replies)
        before = runner.statistics().ignored
        for reply in replies:  # every reply of the finished saga, once more
            assert await runner.on_reply(reply) is False
        assert runner.statistics().ignored == before + len(replies)
    assert view.status == "completed"
    assert len(replies) == 3


async def test_status_lists_running_stuck_and_finished_sagas(tmp_path: Path) -> None:
    ledger = Ledger(silent={"reserve": 100})
    async with running(tmp_path, ledger) as (system, runner):
        await runner.start(BOOK, "waits", Trip(trip="waits", amount=1))
        views = await status(runner.store, clock=system.clock)
        assert [(v.id, v.state, v.step) for v in views] == [("waits", "running", "reserve")]
        later = await status(runner.store, clock=system.clock, stuck_after=0.0)
        assert [v.state for v in later] == ["stuck"]
