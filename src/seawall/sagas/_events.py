"""A saga instance's progress, as the events stored in its stream (sans-IO).

One stream per instance (``saga:<name>:<id>``) in an event store. Every
decision the saga takes is appended before it has any effect: a command is
recorded in :class:`CommandSent` (the whole message, headers and body) and
published by the relay only once stored, so the log is the saga's outbox;
a reply is recorded in :class:`ReplyReceived` before it is acknowledged. A
process that dies between any two of these resumes from the stream.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from .._messages.payload import Event

__all__ = [
    "EVENT_TYPES",
    "Phase",
    "AttemptTimedOut",
    "CommandSent",
    "Compensating",
    "ReplyReceived",
    "SagaCompleted",
    "SagaEvent",
    "SagaRejected",
    "SagaStarted",
    "SagaTimedOut",
    "StepCompensated",
    "StepDone",
    "StepFailed",
]

Phase = Literal["forward", "compensate"]


class SagaStarted(Event, frozen=True):
    """An instance began, with its data and its deadline."""

    type_name: ClassVar[str] = "seawall.saga.Started"
    saga: str
    id: str
    data: bytes
    """The saga's data, JSON."""
    deadline: float | None
    source: str
    """The service running it."""


class CommandSent(Event, frozen=True):
    """A command recorded for the relay to publish (its message id is ``message_id``)."""

    type_name: ClassVar[str] = "seawall.saga.CommandSent"
    step: int
    name: str
    phase: Phase
    attempt: int
    message_id: str
    channel: str
    command: str
    """The command's type name."""
    headers: dict[str, str]
    body: bytes
    expires: float
    """When this attempt stops waiting for its reply."""


class ReplyReceived(Event, frozen=True):
    """A reply to a command of the step under way, and what it meant."""

    type_name: ClassVar[str] = "seawall.saga.ReplyReceived"
    step: int
    phase: Phase
    attempt: int
    reply_id: str
    reply_type: str
    outcome: Literal["ok", "failed", "retry"]
    reason: str = ""
    body: bytes = b""
    retry_at: float | None = None


class AttemptTimedOut(Event, frozen=True):
    """An attempt got no reply within the step's timeout."""

    type_name: ClassVar[str] = "seawall.saga.AttemptTimedOut"
    step: int
    phase: Phase
    attempt: int
    retry_at: float | None
    """When the next attempt goes; None when none will (the step failed)."""


class StepDone(Event, frozen=True):
    """A forward step completed."""

    type_name: ClassVar[str] = "seawall.saga.StepDone"
    step: int
    name: str


class StepFailed(Event, frozen=True):
    """A forward step failed: the saga compensates from here."""

    type_name: ClassVar[str] = "seawall.saga.StepFailed"
    step: int
    name: str
    reason: str
    compensate: bool
    """Whether the step itself is compensated (its outcome is unknown: no answer)."""


class SagaTimedOut(Event, frozen=True):
    """The saga's own timeout passed before it reached a retriable step."""

    type_name: ClassVar[str] = "seawall.saga.TimedOut"
    step: int


class Compensating(Event, frozen=True):
    """The forward path ended; these steps will be compensated, in this order."""

    type_name: ClassVar[str] = "seawall.saga.Compensating"
    reason: str
    steps: list[int]
    """The steps to compensate, in the order they will be (reverse of completion)."""


class StepCompensated(Event, frozen=True):
    """A step's compensation answered."""

    type_name: ClassVar[str] = "seawall.saga.StepCompensated"
    step: int
    name: str


class SagaCompleted(Event, frozen=True):
    """Every step completed."""

    type_name: ClassVar[str] = "seawall.saga.Completed"


class SagaRejected(Event, frozen=True):
    """The saga failed and every compensation ran."""

    type_name: ClassVar[str] = "seawall.saga.Rejected"
    reason: str


SagaEvent = (
    SagaStarted
    | CommandSent
    | ReplyReceived
    | AttemptTimedOut
    | StepDone
    | StepFailed
    | SagaTimedOut
    | Compensating
    | StepCompensated
    | SagaCompleted
    | SagaRejected
)

EVENT_TYPES: tuple[type[Event], ...] = (
    SagaStarted,
    CommandSent,
    ReplyReceived,
    AttemptTimedOut,
    StepDone,
    StepFailed,
    SagaTimedOut,
    Compensating,
    StepCompensated,
    SagaCompleted,
    SagaRejected,
)
