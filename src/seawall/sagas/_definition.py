"""What a saga is: an ordered list of steps, each a command forward and one back.

A :class:`Saga` is a plain value, declared once per flow (the "create order"
saga, say) and shared by every instance of it::

    create_order = Saga(
        "create_order",
        OrderDetails,                      # the saga's data: a msgspec Struct
        timeout=20.0,
        steps=[
            Step("reject order", compensate=lambda d, why: RejectOrder(d.order_id, why),
                 to="order"),              # no action: done when the saga starts
            Step("create ticket", to="kitchen", send=lambda d: CreateTicket(d.order_id),
                 replies=(TicketState,), compensate=lambda d, why: RejectTicket(d.order_id)),
            Step("authorize card", to="accounting", send=lambda d: AuthorizeCard(...),
                 replies=(CardAuthorization,),
                 check=lambda d, r: None if r.approved else "card declined"),
            Step("approve order", to="order", send=lambda d: ApproveOrder(d.order_id),
                 retriable=True),
        ],
    )

The words follow the saga literature. A step's *action* is a command sent to
a participant (``to``); its reply says whether the step is done. A *domain
failure* (a reply of a type in ``failures``, a :class:`~seawall.RemoteError`
whose kind is in ``fails_on``, or a reason returned by ``check``) ends the
forward path: the saga *compensates* the steps that completed, in reverse
order, and ends rejected. No reply within ``timeout`` (or a failure of any
other kind) is retried per the step's :class:`~seawall.RetryPolicy`; a step
that runs out of attempts failed *without knowing* whether its action took
effect, so it is compensated too (its compensation must tolerate an action
that never happened, or that arrives later). A *retriable* step (after the
pivot, in Eventuate's terms) never fails: it is tried until it answers, and
the saga's own ``timeout`` no longer applies once the saga reaches it.
Compensations are retried until they answer.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import KW_ONLY, dataclass, field
from typing import Any, Generic, TypeVar

import msgspec

from .._exceptions import ConfigurationError
from .._messages.payload import Payload
from .._runtime.retry import RetryPolicy

__all__ = ["Saga", "Step"]

D = TypeVar("D", bound=msgspec.Struct)

DEFAULT_RETRY = RetryPolicy(max_attempts=4, initial_backoff=0.05, max_backoff=2.0)


@dataclass(frozen=True)
class Step(Generic[D]):
    """One step: an action command to ``to``, how to read its reply, and its compensation."""

    name: str
    _: KW_ONLY
    to: str | None = None
    """The participant's command channel (for the action and, by default, the compensation)."""
    send: Callable[[D], Payload] | None = None
    """Builds the action command from the saga's data; None for a step with no action."""
    replies: tuple[type[Payload], ...] = ()
    """Reply types that mean the action ran (beside ``seawall.Done``); empty: any."""
    failures: tuple[type[Payload], ...] = ()
    """Reply types that mean a domain failure: the saga compensates."""
    fails_on: tuple[str, ...] = ()
    """Error types of a failed remote handler (``RemoteError.error_type``) that compensate."""
    check: Callable[[D, Any], str | None] | None = None
    """Reads an accepted reply: a reason string makes it a domain failure, None goes on."""
    compensate: Callable[[D, str], Payload] | None = None
    """Builds the compensation command from the data and the reason the saga failed."""
    compensate_to: str | None = None
    """Where the compensation goes; default ``to``."""
    timeout: float = 5.0
    """Seconds each attempt waits for its reply before it is tried again."""
    retry: RetryPolicy = DEFAULT_RETRY
    """Attempts and backoff of the action (compensations retry with its backoff, forever)."""
    retriable: bool = False
    """Never fails: tried until it answers; the saga's timeout stops applying here."""

    def __post_init__(self) -> None:
        where = f"saga step {self.name!r}"
        if self.send is not None and not self.to:
            raise ConfigurationError(f"{where} sends a command but names no channel: pass to=")
        if self.compensate is not None and not (self.compensate_to or self.to):
            raise ConfigurationError(f"{where} compensates but names no channel: pass to=")
        if self.send is None and self.compensate is None:
            raise ConfigurationError(f"{where} has neither send= nor compensate=: it does nothing")
        if self.timeout <= 0:
            raise ConfigurationError(f"{where}: timeout must be positive, got {self.timeout}")

    @property
    def compensation_channel(self) -> str:
        channel = self.compensate_to or self.to
        assert channel is not None
        return channel


@dataclass(frozen=True)
class Saga(Generic[D]):
    """A saga definition: its name, the type of its data, its steps in order, its timeout."""

    name: str
    data: type[D]
    steps: Sequence[Step[D]] = field(default_factory=tuple)
    timeout: float | None = None
    """Seconds from the start after which a saga still going forward compensates."""

    def __post_init__(self) -> None:
        if not self.name or ":" in self.name:
            raise ConfigurationError(f"saga name {self.name!r} must be non-empty, without ':'")
        if not self.steps:
            raise ConfigurationError(f"saga {self.name!r} has no steps")
        names = [s.name for s in self.steps]
        if len(set(names)) != len(names):
            raise ConfigurationError(f"saga {self.name!r} names a step twice: {names}")
        if self.timeout is not None and self.timeout <= 0:
            raise ConfigurationError(f"saga {self.name!r}: timeout must be positive")
        object.__setattr__(self, "steps", tuple(self.steps))

    def stream(self, id: str) -> str:
        """The event-store stream (and correlation id) of instance ``id``."""
        return f"saga:{self.name}:{id}"
