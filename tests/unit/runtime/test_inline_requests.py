"""Requests answered in the caller's task: ``requests="direct"`` services on ``memory://``.

A request made in this process to a ``requests="direct"`` service hosted here, on an
in-process transport, runs its handler in the requester's task when a worker is idle,
nothing waits and its key's lane is free (:meth:`Dispatcher.claim`); everything else
takes the normal path. These tests check both paths give the same answers, errors,
counts and guarantees, and that the fallbacks happen when they must.
"""

from __future__ import annotations

import asyncio

import pytest

from seawall import (
    Command,
    DeadlineExceeded,
    Document,
    MemoryTransport,
    RemoteError,
    RetryPolicy,
    Service,
    System,
)
from seawall._runtime.context import Context
from seawall.testing._delivery import wait_until

QUICK = RetryPolicy(max_attempts=3, initial_backoff=0.001, max_backoff=0.001, jitter=0)


class Ask(Command, frozen=True):
    n: int
    key: str = ""


class Answer(Document, frozen=True):
    n: int


class Log:
    """What each handler call saw: its task, and how many ran at once."""

    def __init__(self) -> None:
        self.tasks: list[asyncio.Task[object] | None] = []
        self.running = 0
        self.most = 0
        self.gates: dict[int, asyncio.Event] = {}
        self.started: list[int] = []
        self.cancelled: list[int] = []
        self.failures: dict[int, int] = {}  # n -> attempts left to fail


def calc(log: Log, *, requests: str = "direct", concurrency: int = 8) -> Service:
    service = Service(
        "calc",
        requests=requests,  # type: ignore[arg-type]
        concurrency=concurrency,
        prefetch=4 * concurrency,
        retry=QUICK,
    )

    @service.command
    async def ask(cmd: Ask) -> Answer:
        log.tasks.append(asyncio.current_task())
        log.started.append(cmd.n)
        log.running += 1
        log.most = max(log.most, log.running)
        try:
            gate = log.gates.get(cmd.n)
            if gate is not None:
                await gate.wait()
            if cmd.n < 0:
                raise ValueError(f"no square root of {cmd.n}")
            if log.failures.get(cmd.n, 0) > 0:
                log.failures[cmd.n] -= 1
                raise RuntimeError("flaky")
        except asyncio.CancelledError:
            log.cancelled.append(cmd.n)
            raise
        finally:
            log.running -= 1
        return Answer(n=cmd.n * 2)

    return service


async def ask(ctx: Context, n: int, key: str | None = None, timeout: float = 5.0) -> int:
    reply = await ctx.request("calc", Ask(n=n), returns=Answer, key=key, timeout=timeout)
    return reply.n


async def warm(ctx: Context) -> None:
    """One request first: the workers have started and sleep idle after it."""
    await ask(ctx, 0)


async def test_a_request_runs_its_handler_in_the_callers_task_and_stores_nothing() -> None:
    log, transport = Log(), MemoryTransport()
    async with System(calc(log), transport=transport) as system:
        ctx = system.context()
        await warm(ctx)
        assert await ask(ctx, 21) == 42
        assert log.tasks[-1] is asyncio.current_task()
        assert transport.unsettled() == 0
        stats = system.stats()["calc:calc/calc"]
        assert stats.handled == 2


async def test_a_stored_service_keeps_its_handler_in_a_worker() -> None:
    log = Log()
    async with System(calc(log, requests="stored"), transport="memory://") as system:
        ctx = system.context()
        await warm(ctx)
        assert await ask(ctx, 21) == 42
        assert log.tasks[-1] is not asyncio.current_task()


async def test_with_no_idle_worker_the_request_waits_its_turn_in_a_worker() -> None:
    log = Log()
    log.gates[1] = asyncio.Event()
    async with System(calc(log, concurrency=1), transport="memory://") as system:
        ctx = system.context()
        await warm(ctx)
        first = asyncio.create_task(ask(ctx, 1))
        await wait_until(lambda: log.running == 1, 2.0, "the first handler")
        second = asyncio.create_task(ask(ctx, 2))
        await asyncio.sleep(0.05)
        assert log.started == [0, 1], "a second handler ran beside the first at concurrency=1"
        log.gates[1].set()
        assert (await first, await second) == (2, 4)
        assert log.most == 1
        assert log.tasks[1] is first
        assert log.tasks[2] is not second, "it should have gone the normal way, to a worker"


async def test_a_key_with_a_request_out_waits_and_other_keys_go_inline() -> None:
    log = Log()
    log.gates[1] = asyncio.Event()
    async with System(calc(log), transport="memory://") as system:
        ctx = system.context()
        await warm(ctx)
        first = asyncio.create_task(ask(ctx, 1, key="k"))
        await wait_until(lambda: log.running == 1, 2.0, "the first handler")
        same = asyncio.create_task(ask(ctx, 2, key="k"))
        await asyncio.sleep(0.05)
        assert 2 not in log.started, "a request overtook the one of its key in flight"
        assert await ask(ctx, 3, key="other") == 6  # another key: inline, at once
        assert log.tasks[-1] is asyncio.current_task()
        log.gates[1].set()
        assert (await first, await same) == (2, 4)
        assert log.started.index(1) < log.started.index(2)


async def test_a_service_hosted_elsewhere_gets_the_request_through_the_channel() -> None:
    log, transport = Log(), MemoryTransport()
    async with (
        System(calc(log), transport=transport),
        System(transport=transport) as client,
    ):
        ctx = client.context()
        assert await ask(ctx, 5) == 10
        assert log.tasks[-1] is not asyncio.current_task()


async def test_a_request_to_an_absent_service_is_stored_until_it_starts() -> None:
    log, transport = Log(), MemoryTransport()
    async with System(transport=transport, registry=False) as client:
        pending = asyncio.create_task(ask(client.context(), 4))
        await asyncio.sleep(0.05)
        assert not pending.done()
        async with System(calc(log), transport=transport, registry=False):
            assert await pending == 8


async def test_a_request_an_inline_call_answered_is_answered_again_from_the_cache() -> None:
    log, transport = Log(), MemoryTransport()
    async with System(calc(log), transport=transport) as system:
        ctx = system.context()
        await warm(ctx)
        reply = ctx.request("calc", Ask(n=7), returns=Answer)
        request = reply._request  # the very message, repeated below with its id
        assert (await reply).n == 14
        assert log.tasks[-1] is asyncio.current_task()
        await transport.publish("calc", request)  # a retry of the same request id
        stats = system.stats()["calc:calc/calc"]
        await wait_until(lambda: stats.repeats == 1, 2.0, "the repeat answered")
        assert log.started.count(7) == 1, "the handler ran twice for one request id"


async def _failure(requests: str) -> tuple[str, str, tuple[int, int, int, int], int]:
    log = Log()
    failures: list[tuple[str, bool]] = []
    system = System(
        calc(log, requests=requests),
        transport="memory://",
        on_failure=lambda name, _m, _e, final: failures.append((name, final)),
    )
    async with system:
        ctx = system.context()
        await warm(ctx)
        with pytest.raises(RemoteError) as caught:
            await ask(ctx, -4)
        stats = system.stats()["calc:calc/calc"]
        counts = (stats.handled, stats.failed, stats.retried, stats.dead_lettered)
        assert failures == [("calc.ask", False)] * 2 + [("calc.ask", True)]
        dead = await system.transport.subscribe("calc.dlq", group="check")
        async for delivery in dead:
            attempts = int(delivery.message.headers["seawall-dlq-attempt"])
            break
        await dead.close()
    return caught.value.error_type, str(caught.value), counts, attempts


async def test_a_failing_handler_gives_the_same_error_counts_and_dead_letter() -> None:
    inline, stored = await _failure("direct"), await _failure("stored")
    assert inline == stored
    assert inline[0] == "ValueError"
    assert inline[3] == 3  # attempts counted across the caller's task and the channel


async def test_a_retried_attempt_goes_through_the_channel_and_answers_the_caller() -> None:
    log = Log()
    log.failures[9] = 1
    async with System(calc(log), transport="memory://") as system:
        ctx = system.context()
        await warm(ctx)
        assert await ask(ctx, 9) == 18
        stats = system.stats()["calc:calc/calc"]
        assert (stats.failed, stats.retried) == (1, 1)
        assert log.tasks[1] is asyncio.current_task()  # the first attempt, inline
        assert log.tasks[2] is not asyncio.current_task()  # the retry, in a worker


async def test_a_handler_past_the_deadline_fails_the_request_as_expired() -> None:
    log = Log()
    log.gates[3] = asyncio.Event()  # never set
    async with System(calc(log), transport="memory://") as system:
        ctx = system.context()
        await warm(ctx)
        with pytest.raises(DeadlineExceeded):
            await ask(ctx, 3, timeout=0.05)
        stats = system.stats()["calc:calc/calc"]
        assert stats.expired == 1
        assert system.dispatchers[0].in_flight == 0


async def test_cancelling_the_caller_cancels_its_handler_and_frees_its_place() -> None:
    log = Log()
    log.gates[1] = asyncio.Event()  # never set
    async with System(calc(log, concurrency=1), transport="memory://") as system:
        ctx = system.context()
        await warm(ctx)
        caller = asyncio.create_task(ask(ctx, 1))
        await wait_until(lambda: log.running == 1, 2.0, "the handler")
        assert log.tasks[-1] is caller
        caller.cancel()
        with pytest.raises(asyncio.CancelledError):
            await caller
        assert log.cancelled == [1]
        assert system.dispatchers[0].in_flight == 0
        assert await ask(ctx, 2) == 4  # the place (and the only worker) is back
        assert log.tasks[-1] is asyncio.current_task()


async def test_a_draining_system_waits_for_a_request_answered_in_its_callers_task() -> None:
    log = Log()
    log.gates[1] = asyncio.Event()
    system = System(calc(log), transport="memory://", grace=5.0)
    await system.__aenter__()
    ctx = system.context()
    await warm(ctx)
    caller = asyncio.create_task(ask(ctx, 1))
    await wait_until(lambda: log.running == 1, 2.0, "the handler")
    assert log.tasks[-1] is caller
    assert system.dispatchers[0].busy
    stopping = asyncio.create_task(system.__aexit__(None, None, None))
    await asyncio.sleep(0.1)
    assert not stopping.done(), "the system stopped under a running request"
    log.gates[1].set()
    assert await caller == 2
    await asyncio.wait_for(stopping, 5.0)


async def test_a_repeat_arriving_while_the_inline_call_runs_does_not_run_it_twice() -> None:
    log, transport = Log(), MemoryTransport()
    log.gates[6] = asyncio.Event()
    async with System(calc(log), transport=transport) as system:
        ctx = system.context()
        await warm(ctx)
        reply = ctx.request("calc", Ask(n=6), returns=Answer)
        caller = asyncio.create_task(reply._wait())
        await wait_until(lambda: log.running == 1, 2.0, "the handler")
        assert log.tasks[-1] is caller
        await transport.publish("calc", reply._request)  # the same request id, again
        stats = system.stats()["calc:calc/calc"]
        await wait_until(lambda: stats.repeats == 1, 2.0, "the repeat taken as one")
        log.gates[6].set()
        assert (await caller).n == 12
        assert log.started.count(6) == 1, "the handler ran twice for one request id"


async def test_with_another_group_on_the_channel_the_request_is_published_for_both() -> None:
    log, transport = Log(), MemoryTransport()
    async with System(calc(log), transport=transport) as system:
        ctx = system.context()
        await warm(ctx)
        audit = await transport.subscribe("calc", group="audit", start="latest")
        assert await ask(ctx, 8) == 16
        assert log.tasks[-1] is not asyncio.current_task(), "the audit group's copy was skipped"
        async for delivery in audit:
            assert delivery.message.type == Ask.type_name
            break
        await audit.close()
        assert await ask(ctx, 9) == 18  # the audit group left: inline again
        assert log.tasks[-1] is asyncio.current_task()
