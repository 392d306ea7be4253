"""A saga instance's state: the fold of its events (sans-IO, no definition needed).

:class:`SagaState` is what the machine decides from and what tools show. It is
rebuilt by applying the stream's events in order; it reads nothing else, so
``seawall sagas status`` can fold a store without the sagas' code.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from ._events import (
    AttemptTimedOut,
    CommandSent,
    Compensating,
    ReplyReceived,
    SagaCompleted,
    SagaEvent,
    SagaRejected,
    SagaStarted,
    SagaTimedOut,
    StepCompensated,
    StepDone,
    StepFailed,
)

__all__ = ["SagaState", "Status"]

Status = Literal["running", "compensating", "completed", "rejected"]


@dataclass
class SagaState:
    """Where one saga instance is; see the module docstring."""

    saga: str = ""
    id: str = ""
    data: bytes = b""
    source: str = ""
    status: Status = "running"
    deadline: float | None = None
    started_at: float = 0.0
    updated_at: float = 0.0
    version: int = 0
    """The stream's version: how many events were applied."""
    step: int = 0
    """The forward step under way (or next); the step count once completed."""
    step_name: str = ""
    phase: Literal["forward", "compensate"] = "forward"
    attempt: int = 0
    """Attempts sent for the current step and phase."""
    pending: dict[str, int] = field(default_factory=dict)
    """Message ids sent for the current step and phase -> attempt: their replies count."""
    expires: float | None = None
    retry_at: float | None = None
    done: list[int] = field(default_factory=list)
    """Forward steps that completed (or may have), in order."""
    to_compensate: list[int] = field(default_factory=list)
    compensated: list[int] = field(default_factory=list)
    """Steps compensated, in the order it happened."""
    reason: str = ""
    timed_out: bool = False
    progressed_at: float = 0.0
    """When it last moved on (a step began, ended or was compensated); retries do not count."""
    names: dict[int, str] = field(default_factory=dict)
    """Step names seen in the events, by index."""

    @property
    def stream(self) -> str:
        return f"saga:{self.saga}:{self.id}"

    @property
    def finished(self) -> bool:
        return self.status in ("completed", "rejected")

    @property
    def current(self) -> int:
        """The step the saga works on now: forward, or the one being compensated."""
        if self.phase == "compensate" and self.to_compensate:
            return self.to_compensate[0]
        return self.step

    def apply(self, event: SagaEvent, time: float) -> None:
        """Fold one event, appended at ``time``."""
        self.version += 1
        self.updated_at = time
        if not isinstance(event, (ReplyReceived, AttemptTimedOut)) and (
            not isinstance(event, CommandSent) or event.attempt == 1
        ):
            self.progressed_at = time
        if isinstance(event, (CommandSent, StepDone, StepFailed, StepCompensated)):
            self.names[event.step] = event.name
        match event:
            case SagaStarted():
                self.saga, self.id, self.data = event.saga, event.id, event.data
                self.deadline, self.source, self.started_at = event.deadline, event.source, time
            case CommandSent():
                if (event.step, event.phase) != (self.current, self.phase) or event.attempt == 1:
                    self.pending = {}
                self.phase, self.step_name, self.attempt = event.phase, event.name, event.attempt
                self.pending[event.message_id] = event.attempt
                self.expires, self.retry_at = event.expires, None
            case ReplyReceived():
                self.expires, self.retry_at = None, event.retry_at
            case AttemptTimedOut():
                self.expires, self.retry_at = None, event.retry_at
            case StepDone():
                self.done.append(event.step)
                self._next_step(event.step + 1)
            case StepFailed():
                if event.compensate:
                    self.done.append(event.step)
                self.reason = event.reason
                self._next_step(self.step)
            case SagaTimedOut():
                self.timed_out = True
            case Compensating():
                self.status, self.phase, self.reason = "compensating", "compensate", event.reason
                self.to_compensate = list(event.steps)
                self.pending, self.expires, self.retry_at, self.attempt = {}, None, None, 0
            case StepCompensated():
                if event.step in self.to_compensate:
                    self.to_compensate.remove(event.step)
                self.compensated.append(event.step)
                self.pending, self.expires, self.retry_at, self.attempt = {}, None, None, 0
            case SagaCompleted():
                self.status = "completed"
            case SagaRejected():
                self.status, self.reason = "rejected", event.reason

    def _next_step(self, step: int) -> None:
        self.step = step
        self.pending, self.expires, self.retry_at, self.attempt = {}, None, None, 0
