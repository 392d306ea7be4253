"""Tests for the sans-IO restart policy and the asyncio Supervisor around it."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from seawall import (
    ConfigurationError,
    ConnectionLost,
    RestartIntensity,
    ServiceError,
    Supervisor,
    SupervisorGaveUp,
    VirtualClock,
)
from seawall._runtime.supervisor import RestartTracker


@contextlib.asynccontextmanager
async def autojump(clock: VirtualClock) -> AsyncIterator[None]:
    """Run the clock's autojump beside the body; a real 2 s limit guards against hangs."""
    async with asyncio.timeout(2), asyncio.TaskGroup() as group:
        jumper = group.create_task(clock.run_autojump())
        try:
            yield
        finally:
            jumper.cancel()


async def run_until_cancelled(seen: list[str], label: str) -> None:
    try:
        await asyncio.Event().wait()
    except asyncio.CancelledError:
        seen.append(label)
        raise


# --- RestartIntensity and RestartTracker (sans-IO) ---------------------------


def test_intensity_defaults_are_frozen_and_keyword_only() -> None:
    intensity = RestartIntensity()
    assert (intensity.max_restarts, intensity.within) == (5, 60.0)
    with pytest.raises(dataclasses.FrozenInstanceError):
        intensity.max_restarts = 1  # type: ignore[misc]
    with pytest.raises(TypeError):
        RestartIntensity(3)  # type: ignore[call-arg]


@pytest.mark.parametrize(
    "bad",
    [
        {"max_restarts": -1},
        {"within": 0.0},
        {"initial_backoff": -0.1},
        {"initial_backoff": 5.0, "max_backoff": 1.0},
        {"multiplier": 0.5},
    ],
)
def test_intensity_rejects_impossible_settings(bad: dict[str, float]) -> None:
    with pytest.raises(ConfigurationError, match="RestartIntensity needs"):
        RestartIntensity(**bad)  # type: ignore[arg-type]


def test_backoff_grows_with_consecutive_crashes_and_is_capped() -> None:
    tracker = RestartTracker(
        RestartIntensity(max_restarts=10, within=100, initial_backoff=1, max_backoff=5)
    )
    delays = [tracker.record_crash(float(t)) for t in range(6)]
    assert delays == [1, 2, 4, 5, 5, 5]


def test_gives_up_exactly_past_max_restarts() -> None:
    tracker = RestartTracker(RestartIntensity(max_restarts=3, within=10))
    assert [tracker.record_crash(t) for t in (0.0, 1.0, 2.0)] == [0.1, 0.2, 0.4]
    assert tracker.record_crash(3.0) is None


def test_zero_max_restarts_gives_up_on_the_first_crash() -> None:
    assert RestartTracker(RestartIntensity(max_restarts=0)).record_crash(0.0) is None


def test_window_slides_so_old_crashes_stop_counting() -> None:
    tracker = RestartTracker(RestartIntensity(max_restarts=2, within=10))
    assert tracker.record_crash(0.0) is not None
    assert tracker.record_crash(5.0) is not None
    # The crash at 0 is exactly `within` old at 10: it no longer counts.
    assert tracker.crashes_within(10.0) == 1
    assert tracker.record_crash(10.0) is not None
    assert tracker.record_crash(12.0) is None  # 5, 10 and 12 are in the window


def test_backoff_keeps_growing_while_the_window_is_never_empty() -> None:
    tracker = RestartTracker(RestartIntensity(max_restarts=5, within=10, initial_backoff=1))
    assert [tracker.record_crash(t) for t in (0.0, 6.0, 12.0, 18.0)] == [1, 2, 4, 8]
    assert tracker.crashes_within(18.0) == 2


def test_backoff_resets_after_a_quiet_window() -> None:
    tracker = RestartTracker(RestartIntensity(max_restarts=5, within=10, initial_backoff=1))
    assert [tracker.record_crash(t) for t in (0.0, 1.0, 2.0)] == [1, 2, 4]
    assert tracker.crashes_within(12.0) == 0
    assert tracker.record_crash(12.0) == 1
    assert tracker.record_crash(13.0) == 2


# --- Supervisor ---------------------------------------------------------------


async def test_crashing_child_is_restarted_after_growing_backoffs() -> None:
    clock = VirtualClock()
    t0 = clock.time()
    starts: list[float] = []

    async def flaky() -> None:
        starts.append(clock.time() - t0)
        if len(starts) <= 3:
            raise ValueError(f"boom {len(starts)}")

    async with autojump(clock), Supervisor(name="orders", clock=clock) as supervisor:
        supervisor.start("flaky", flaky)
    assert starts == pytest.approx([0.0, 0.1, 0.3, 0.7])
    assert supervisor.restarts == {"flaky": 3}
    assert supervisor.healthy
    assert supervisor.failure is None


async def test_child_returning_normally_is_not_restarted() -> None:
    clock = VirtualClock()
    runs: list[int] = []

    async def once() -> None:
        runs.append(1)

    async with autojump(clock), Supervisor(name="orders", clock=clock) as supervisor:
        supervisor.start("once", once)
        await clock.sleep(30)
    assert runs == [1]
    assert supervisor.restarts == {"once": 0}


async def test_gives_up_cancels_siblings_and_raises_unwrapped() -> None:
    clock = VirtualClock()
    t0 = clock.time()
    cancelled: list[str] = []
    intensity = RestartIntensity(max_restarts=2, within=60)

    async def always_fails() -> None:
        raise ValueError("database is gone")

    supervisor = Supervisor(name="orders", clock=clock, intensity=intensity)

    async def supervise() -> None:
        async with supervisor:
            supervisor.start("healthy", lambda: run_until_cancelled(cancelled, "healthy"))
            supervisor.start("doomed", always_fails)
            await run_until_cancelled(cancelled, "body")

    async with autojump(clock):
        with pytest.raises(SupervisorGaveUp) as caught:
            await supervise()
    assert sorted(cancelled) == ["body", "healthy"]
    assert clock.time() - t0 == pytest.approx(0.1 + 0.2)
    assert not supervisor.healthy
    assert supervisor.failure is caught.value
    assert isinstance(caught.value.__cause__, ValueError)
    message = str(caught.value)
    for part in ("orders", "'doomed'", "3 times within 60 s", "max_restarts=2", "RestartIntensity"):
        assert part in message
    assert supervisor.restarts == {"healthy": 0, "doomed": 2}


async def test_stop_cancels_children_and_exits_cleanly() -> None:
    clock = VirtualClock()
    cancelled: list[str] = []
    async with autojump(clock), Supervisor(name="orders", clock=clock) as supervisor:
        supervisor.start("a", lambda: run_until_cancelled(cancelled, "a"))
        supervisor.start("b", lambda: run_until_cancelled(cancelled, "b"))
        await clock.sleep(1)
        await supervisor.stop()
        assert sorted(cancelled) == ["a", "b"]
        with pytest.raises(ServiceError, match="cannot start child 'c'"):
            supervisor.start("c", lambda: run_until_cancelled(cancelled, "c"))
    assert supervisor.healthy


async def test_stop_during_backoff_does_not_restart() -> None:
    clock = VirtualClock()
    t0 = clock.time()
    runs: list[float] = []

    async def fails() -> None:
        runs.append(clock.time())
        raise ValueError("boom")

    async with autojump(clock), Supervisor(name="orders", clock=clock) as supervisor:
        supervisor.start("fails", fails)
        await clock.sleep(0.05)  # the child now waits out its 0.1 s backoff
        await supervisor.stop()
    await asyncio.sleep(0)
    assert runs == [t0]
    assert supervisor.restarts == {"fails": 0}


async def test_crash_while_stopping_is_logged_not_restarted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = VirtualClock()
    runs: list[int] = []

    async def messy_shutdown() -> None:
        runs.append(1)
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            raise RuntimeError("flush failed") from None

    async with autojump(clock), Supervisor(name="orders", clock=clock) as supervisor:
        supervisor.start("messy", messy_shutdown)
        await clock.sleep(1)
        await supervisor.stop()
    assert runs == [1]
    assert supervisor.healthy
    assert any("crashed while stopping" in r.getMessage() for r in caplog.records)


async def test_sibling_crashing_on_cancel_after_give_up_is_not_restarted() -> None:
    clock = VirtualClock()
    runs: list[int] = []

    async def messy_sibling() -> None:
        runs.append(1)
        if len(runs) > 1:
            return  # a wrong restart ends here, so the test fails instead of hanging
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            raise RuntimeError("flush failed") from None

    async def always_fails() -> None:
        raise ValueError("boom")

    supervisor = Supervisor(name="orders", clock=clock, intensity=RestartIntensity(max_restarts=1))

    async def supervise() -> None:
        async with supervisor:
            supervisor.start("messy", messy_sibling)
            supervisor.start("doomed", always_fails)

    async with autojump(clock):
        with pytest.raises(SupervisorGaveUp, match="'doomed'"):
            await supervise()
    assert runs == [1]


async def test_child_that_stops_the_supervisor_then_crashes_is_not_restarted() -> None:
    clock = VirtualClock()
    runs: list[int] = []

    async def shutdown_then_fail() -> None:
        runs.append(1)
        await supervisor.stop()
        raise RuntimeError("late failure")

    async with autojump(clock), Supervisor(name="orders", clock=clock) as supervisor:
        supervisor.start("closer", shutdown_then_fail)
    assert runs == [1]
    assert supervisor.healthy


async def test_supervisor_runs_only_once() -> None:
    supervisor = Supervisor(name="orders", clock=VirtualClock())
    async with supervisor:
        pass
    with pytest.raises(ServiceError, match="runs only once"):
        async with supervisor:
            pass


async def test_crash_is_logged_with_child_name_and_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = VirtualClock()
    attempts: list[int] = []

    async def parse_orders() -> None:
        attempts.append(1)
        if len(attempts) == 1:
            raise KeyError("order-42")

    caplog.set_level(logging.ERROR, logger="seawall.supervisor")
    async with autojump(clock), Supervisor(name="orders", clock=clock) as supervisor:
        supervisor.start("parser", parse_orders)
    [record] = caplog.records
    assert record.name == "seawall.supervisor"
    assert record.levelno == logging.ERROR
    assert "parser" in record.getMessage()
    assert "restart #1" in record.getMessage()
    assert "Traceback" in caplog.text
    assert "parse_orders" in caplog.text  # the frame that raised
    assert "KeyError: 'order-42'" in caplog.text


async def _lose_link_in_a_task_group() -> None:
    # what a child's task group raises when the task reading from the broker loses its link
    raise ExceptionGroup("unhandled errors in a TaskGroup", [ConnectionLost("link lost")])


async def _lose_link() -> None:
    raise ConnectionLost("the broker at 127.0.0.1:4222 went away")


@pytest.mark.parametrize("lose_link", [_lose_link, _lose_link_in_a_task_group])
async def test_a_lost_link_is_one_warning_line_without_traceback(
    caplog: pytest.LogCaptureFixture, lose_link: Callable[[], Awaitable[None]]
) -> None:
    clock = VirtualClock()
    attempts: list[int] = []

    async def consume() -> None:
        attempts.append(1)
        if len(attempts) == 1:
            await lose_link()

    caplog.set_level(logging.INFO, logger="seawall.supervisor")
    async with autojump(clock), Supervisor(name="orders", clock=clock) as supervisor:
        supervisor.start("consumer", consume)
    [record] = caplog.records
    assert record.levelno == logging.WARNING
    assert "consumer" in record.getMessage()
    assert "lost its link" in record.getMessage()
    assert "restart #1" in record.getMessage()
    assert record.exc_info is None
    assert "Traceback" not in caplog.text
    assert len(attempts) == 2  # restarted all the same


async def test_give_up_is_logged_critical(caplog: pytest.LogCaptureFixture) -> None:
    clock = VirtualClock()

    async def fails() -> None:
        raise ValueError("boom")

    supervisor = Supervisor(name="orders", clock=clock, intensity=RestartIntensity(max_restarts=0))
    async with autojump(clock):
        with pytest.raises(SupervisorGaveUp):
            async with supervisor:
                supervisor.start("fails", fails)
    [record] = [r for r in caplog.records if r.levelno == logging.CRITICAL]
    assert "gave up on child 'fails'" in record.getMessage()
    assert record.exc_info is not None


async def test_error_in_body_cancels_children_and_propagates_unwrapped() -> None:
    cancelled: list[str] = []

    started = asyncio.Event()

    async def child() -> None:
        started.set()
        await run_until_cancelled(cancelled, "a")

    async def supervise() -> None:
        async with Supervisor(name="orders", clock=VirtualClock()) as supervisor:
            supervisor.start("a", child)
            await started.wait()
            raise LookupError("body failed")

    with pytest.raises(LookupError, match="body failed") as caught:
        await supervise()
    assert not isinstance(caught.value, BaseExceptionGroup)
    assert cancelled == ["a"]


async def test_start_outside_context_or_twice_is_refused() -> None:
    supervisor = Supervisor(name="orders", clock=VirtualClock())
    with pytest.raises(ServiceError, match="start children inside 'async with'"):
        supervisor.start("a", lambda: asyncio.sleep(0))
    cancelled: list[str] = []
    async with supervisor:
        supervisor.start("a", lambda: run_until_cancelled(cancelled, "a"))
        with pytest.raises(ServiceError, match="already runs a child named 'a'"):
            supervisor.start("a", lambda: run_until_cancelled(cancelled, "a"))
        await supervisor.stop()


async def test_a_child_whose_task_group_failed_late_is_still_restarted() -> None:
    # On Python 3.11 a TaskGroup whose task fails after the body has finished leaves
    # the enclosing task's cancelling() count raised; the supervisor must not take
    # that for a stop and leave the child dead.
    clock = VirtualClock()
    attempts: list[int] = []

    async def fails_later() -> None:
        await asyncio.sleep(0)
        raise ConnectionLost("the broker went away")

    async def consume() -> None:
        attempts.append(1)
        if len(attempts) == 1:
            async with asyncio.TaskGroup() as tasks:
                tasks.create_task(fails_later())

    async with autojump(clock), Supervisor(name="orders", clock=clock) as supervisor:
        supervisor.start("consumer", consume)
        while len(attempts) < 2 and supervisor.healthy:
            await clock.sleep(0.05)
    assert len(attempts) == 2
    assert supervisor.restarts["consumer"] == 1
