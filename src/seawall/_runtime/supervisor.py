"""Supervision: let a task crash, restart it with backoff, give up loudly.

Part of the runtime layer. The restart policy is sans-IO: a
:class:`RestartTracker` is fed crash timestamps and answers with the backoff
before the next restart, or ``None`` when the :class:`RestartIntensity` is
exceeded. :class:`Supervisor` is the thin asyncio wrapper: it owns a
``TaskGroup``, restarts each crashed child on its own (one-for-one), and when
one child crashes too often it cancels the others and raises
:class:`~seawall.SupervisorGaveUp`. Time is read only through the injected clock.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType, TracebackType
from typing import Self

from .._clock import Clock, SystemClock
from .._exceptions import ConfigurationError, ConnectionLost, ServiceError, SupervisorGaveUp
from .._tasks import being_cancelled

__all__ = ["RestartIntensity", "RestartTracker", "Supervisor"]

logger = logging.getLogger("seawall.supervisor")


@dataclass(frozen=True, kw_only=True)
class RestartIntensity:
    """How often a child may crash (``max_restarts`` per ``within`` seconds) and the backoff."""

    max_restarts: int = 5
    within: float = 60.0
    initial_backoff: float = 0.1
    max_backoff: float = 10.0
    multiplier: float = 2.0

    def __post_init__(self) -> None:
        if self.max_restarts < 0 or self.within <= 0:
            raise ConfigurationError(
                f"RestartIntensity needs max_restarts >= 0 and within > 0, "
                f"got max_restarts={self.max_restarts}, within={self.within}"
            )
        if not 0 <= self.initial_backoff <= self.max_backoff or self.multiplier < 1:
            raise ConfigurationError(
                f"RestartIntensity needs 0 <= initial_backoff <= max_backoff and "
                f"multiplier >= 1, got initial_backoff={self.initial_backoff}, "
                f"max_backoff={self.max_backoff}, multiplier={self.multiplier}"
            )


_DEFAULT_INTENSITY = RestartIntensity()


class RestartTracker:
    """Sans-IO restart policy for one child: fed crash times, answers with a backoff.

    A crash counts while it is younger than ``within`` seconds. The backoff
    starts at ``initial_backoff``, is multiplied on each crash that finds
    earlier ones still in the window, is capped at ``max_backoff``, and starts
    over once the window has emptied.
    """

    def __init__(self, intensity: RestartIntensity = _DEFAULT_INTENSITY) -> None:
        self.intensity = intensity
        # One more than allowed is all it takes to decide, so the deque is bounded.
        self._crashes: deque[float] = deque(maxlen=intensity.max_restarts + 1)
        self._backoff = intensity.initial_backoff

    def crashes_within(self, now: float) -> int:
        """How many crashes fall within the window ending at ``now``."""
        while self._crashes and self._crashes[0] <= now - self.intensity.within:
            self._crashes.popleft()
        return len(self._crashes)

    def record_crash(self, now: float) -> float | None:
        """Record a crash at ``now``; the delay before restarting, or None to give up."""
        spec = self.intensity
        if self.crashes_within(now) == 0:
            self._backoff = spec.initial_backoff
        else:
            self._backoff = min(spec.max_backoff, self._backoff * spec.multiplier)
        self._crashes.append(now)
        if len(self._crashes) > spec.max_restarts:
            return None
        return self._backoff


ChildFunction = Callable[[], Awaitable[None]]


class Supervisor:
    """Runs named children in a ``TaskGroup`` and restarts each one that crashes.

    A child that returns is done. A child that raises is logged and restarted
    after a backoff. A child that crashes more often than ``intensity`` allows
    makes the supervisor give up: every other child is cancelled and leaving
    ``async with`` raises :class:`~seawall.SupervisorGaveUp`. Leaving it normally
    waits for the children; call :meth:`stop` to cancel them.
    """

    def __init__(
        self,
        *,
        name: str,
        clock: Clock | None = None,
        intensity: RestartIntensity = _DEFAULT_INTENSITY,
    ) -> None:
        self.name = name
        self.intensity = intensity
        self._clock: Clock = clock if clock is not None else SystemClock()
        self._group: asyncio.TaskGroup | None = None
        self._children: dict[str, asyncio.Task[None]] = {}
        self._restarts: dict[str, int] = {}
        self._failure: SupervisorGaveUp | None = None
        self._stopping = False

    @property
    def healthy(self) -> bool:
        """False once the supervisor has given up on a child."""
        return self._failure is None

    @property
    def failure(self) -> SupervisorGaveUp | None:
        """Why the supervisor gave up, or None while it has not."""
        return self._failure

    @property
    def restarts(self) -> Mapping[str, int]:
        """Restarts so far per child name (a live, read-only view)."""
        return MappingProxyType(self._restarts)

    async def __aenter__(self) -> Self:
        if self._group is not None:
            raise ServiceError(f"supervisor {self.name} runs only once; create a new one")
        self._group = asyncio.TaskGroup()
        await self._group.__aenter__()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        assert self._group is not None
        try:
            await self._group.__aexit__(exc_type, exc, tb)
        except BaseExceptionGroup as group:
            if self._failure is not None:
                raise self._failure from self._failure.__cause__
            if exc is not None and group.exceptions == (exc,):
                return False  # only the body failed: let its own error through
            raise
        return False

    def start(self, name: str, run: ChildFunction) -> None:
        """Start a child that runs ``run()``, restarting it whenever it crashes."""
        if self._group is None or self._stopping or self._failure is not None:
            raise ServiceError(
                f"supervisor {self.name} cannot start child {name!r}: it is not "
                f"running; start children inside 'async with' and before stop()"
            )
        if name in self._children:
            raise ServiceError(f"supervisor {self.name} already runs a child named {name!r}")
        self._restarts[name] = 0
        task = self._group.create_task(self._supervise(name, run), name=f"{self.name}/{name}")
        self._children[name] = task
        task.add_done_callback(lambda done: self._forget(name, done))

    async def stop(self) -> None:
        """Cancel every child (except the caller, if it is one) and wait for them to end."""
        self._stopping = True
        current = asyncio.current_task()
        others = [task for task in self._children.values() if task is not current]
        for task in others:
            task.cancel()
        if others:
            await asyncio.wait(others)

    def _forget(self, name: str, task: asyncio.Task[None]) -> None:
        if self._children.get(name) is task:
            del self._children[name]

    async def _supervise(self, name: str, run: ChildFunction) -> None:
        tracker = RestartTracker(self.intensity)
        while True:
            try:
                # Each run gets a task of its own: on Python 3.11 a task group that
                # fails late leaves its task's cancelling() count raised, and this task
                # reads its own count to tell a stop from a crash. Cancelling this task
                # cancels the awaited one too.
                await asyncio.ensure_future(run())
                return
            except Exception as exc:
                if self._stopping or being_cancelled():
                    logger.warning(
                        "child %s of supervisor %s crashed while stopping; not restarted",
                        name,
                        self.name,
                        exc_info=exc,
                    )
                    return
                delay = tracker.record_crash(self._clock.time())
                if delay is None:
                    raise self._give_up(name, exc) from exc
                self._log_crash(name, exc, delay)
            await self._clock.sleep(delay)
            self._restarts[name] += 1

    def _log_crash(self, name: str, exc: Exception, delay: float) -> None:
        restart = self._restarts[name] + 1
        # A lost broker link is expected weather, not a bug: one line, no traceback.
        expected = _only_lost_links(exc)
        logger.log(
            logging.WARNING if expected else logging.ERROR,
            "child %s of supervisor %s %s %r; restart #%d in %.3g s",
            name,
            self.name,
            "lost its link:" if expected else "crashed with",
            exc,
            restart,
            delay,
            exc_info=None if expected else exc,
            extra={"supervisor": self.name, "child": name, "restart": restart},
        )

    def _give_up(self, name: str, exc: Exception) -> SupervisorGaveUp:
        spec = self.intensity
        failure = SupervisorGaveUp(
            f"supervisor {self.name} gave up on child {name!r}: it crashed "
            f"{spec.max_restarts + 1} times within {spec.within:g} s (max_restarts="
            f"{spec.max_restarts}), last with {exc!r}; fix the cause in the log above, "
            f"or allow more with RestartIntensity(max_restarts=..., within=...)"
        )
        self._failure = self._failure or failure  # if two give up at once, the first wins
        logger.critical(
            "%s; cancelling its other children",
            failure,
            exc_info=exc,
            extra={"supervisor": self.name, "child": name},
        )
        return failure


def _only_lost_links(exc: BaseException) -> bool:
    """Whether ``exc`` is a lost link, alone or as every leaf of a task group's error."""
    if isinstance(exc, BaseExceptionGroup):
        return exc.split(ConnectionLost)[1] is None
    return isinstance(exc, ConnectionLost)
