"""Middleware: code that wraps every handler call and every send, in order.

Part of the runtime layer, and its public extension point: tracing and metrics
(:mod:`seawall.observability`) are built on it, like anything a user adds.

An *around-handle* layer is an async callable ``(call, call_next)``: it gets a
:class:`Handling` (the message, its decoded payload, the handler's
:class:`~seawall.Context`, the attempt number) and hands it on with
``await call_next(call)``, which returns what the handler returned. An
*around-send* layer gets an :class:`Outgoing` (channel, message, kind of send)
and passes it, or a changed copy (:meth:`Outgoing.replace`), to
``await call_next(out)``, which publishes it. Layers run in the order they were
added: the first is outermost. A system's layers wrap a service's.

When an attempt fails, a layer that catches the error learns its fate (retry,
dead letter, expiry: :mod:`seawall._runtime.failure`) from
:meth:`Handling.outcome`, before the dispatcher carries it out: whether it was
the last attempt, and why.

With no layer installed the hot path pays one ``is None`` check per handler
call and per send; a :class:`Middleware` subclass contributes only the hooks
it overrides.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, Protocol

import msgspec

from .._messages.envelope import Message
from .._messages.payload import Payload

if TYPE_CHECKING:
    from .context import Context
    from .system import System

__all__ = [
    "AroundHandle",
    "AroundSend",
    "Handling",
    "Middleware",
    "NextHandle",
    "NextSend",
    "Outcome",
    "Outgoing",
    "SendKind",
    "compose_handle",
    "compose_send",
]

SendKind = Literal["send", "publish", "request", "gather", "reply"]
"""Which :class:`~seawall.Context` call made a message (``reply``: a handler's answer)."""


@dataclass(frozen=True, slots=True)
class Outcome:
    """What becomes of a failed attempt (:meth:`Handling.outcome`), before the dispatcher acts."""

    action: Literal["retry", "dead-letter", "expire"]
    reason: str = ""
    """For a dead letter, its ``seawall-dlq-reason`` (``handler-error``, …)."""
    why: str = ""
    """In a few words, why no further attempt (dead letter) or nothing at all."""
    delay: float = 0.0
    """For a retry, seconds until the next attempt."""
    channel: str | None = None
    """For a dead letter, the dead-letter channel."""


class Handling:
    """One attempt at handling one message, as the around-handle layers see it.

    Made by the dispatcher, one per attempt, on the path of every message: it
    holds the dispatcher's own records and reads them only when asked.
    """

    __slots__ = ("_context", "_item", "_owner", "_target", "deadline", "payload")

    def __init__(
        self, owner: Any, target: Any, item: Any, payload: Payload | None, deadline: float | None
    ) -> None:
        self._owner = owner  # the dispatcher
        self._target = target  # its handler, called at the end of the chain
        self._item = item  # its record of this delivery
        self.payload = payload
        """The decoded payload the handler receives."""
        self.deadline = deadline
        """Absolute deadline of the work (epoch seconds), if the message has one."""
        self._context: Context | None = None

    @property
    def service(self) -> str:
        """The service whose handler this is."""
        service: str = self._owner.service
        return service

    @property
    def channel(self) -> str:
        """Where the message was delivered from."""
        channel: str = self._item.delivery.channel
        return channel

    @property
    def group(self) -> str:
        """The consumer group handling it."""
        group: str = self._owner.spec.group
        return group

    @property
    def handler(self) -> str:
        """The handler's name (``service.function``)."""
        name: str = self._target.name
        return name

    @property
    def message(self) -> Message:
        """The message being handled."""
        message: Message = self._item.delivery.message
        return message

    @property
    def attempt(self) -> int:
        """1 on the first delivery, counting redeliveries and local retries."""
        attempt: int = self._owner.tried(self._item)
        return attempt

    @property
    def context(self) -> Context:
        """The context the handler receives (its ``ctx``), made when first asked for."""
        if self._context is None:
            self._context = self._owner.context_of(self)
        assert self._context is not None
        return self._context

    def outcome(self, error: BaseException) -> Outcome | None:
        """What the dispatcher will do after this attempt failed with ``error``.

        Decided when first asked (and then kept, so the dispatcher does what
        was said), from the message's attempts, deadline and retry policy;
        None for an error that is no handler failure (a cancellation).
        """
        if not isinstance(error, Exception):
            return None
        outcome: Outcome = self._owner.outcome_of(self._item, error)
        return outcome

    def __repr__(self) -> str:
        return (
            f"Handling({self.handler}, {self.message.type} {self.message.id}, "
            f"attempt {self.attempt}, {self.channel}/{self.group})"
        )


class Outgoing(msgspec.Struct, frozen=True, kw_only=True):
    """One message on its way to the transport, as the around-send layers see it."""

    channel: str
    message: Message
    kind: SendKind
    service: str
    """The sending service (or a client's source name)."""
    not_before: float | None = None
    priority: int = 0

    def replace(self, **changes: Any) -> Outgoing:
        """A copy with ``changes`` (e.g. ``channel=``), to hand to ``call_next``."""
        return msgspec.structs.replace(self, **changes)

    def with_message(self, message: Message) -> Outgoing:
        """A copy carrying ``message`` instead (faster than :meth:`replace`)."""
        return Outgoing(
            channel=self.channel,
            message=message,
            kind=self.kind,
            service=self.service,
            not_before=self.not_before,
            priority=self.priority,
        )


NextHandle = Callable[[Handling], Awaitable[object]]
"""The rest of the chain after an around-handle layer; returns the handler's result."""

NextSend = Callable[[Outgoing], Awaitable[None]]
"""The rest of the chain after an around-send layer; publishes the message."""


class AroundHandle(Protocol):
    """An around-handle layer: ``async def layer(call, call_next) -> object``."""

    def __call__(self, call: Handling, call_next: NextHandle, /) -> Awaitable[object]: ...


class AroundSend(Protocol):
    """An around-send layer: ``async def layer(out, call_next) -> None``."""

    def __call__(self, out: Outgoing, call_next: NextSend, /) -> Awaitable[None]: ...


class Middleware:
    """Both kinds of layer in one object; override :meth:`handle`, :meth:`send`, or both.

    Only the methods a subclass overrides are put in the chains, so a
    send-only middleware costs nothing around handlers and vice versa.
    """

    def handle(self, call: Handling, call_next: NextHandle) -> Awaitable[object]:
        """Around each handler call (override with an ``async def``); the default passes it on."""
        return call_next(call)

    def send(self, out: Outgoing, call_next: NextSend) -> Awaitable[None]:
        """Around each send (override with an ``async def``); the default passes it on."""
        return call_next(out)

    def attach(self, system: System) -> None:
        """Called with each system it serves; the default does nothing.

        :meth:`System.use` calls it, and so does a system joined by a service
        whose :meth:`Service.use` took it. Middleware that needs the system (its
        transport, its statistics) takes it here.
        """

    def layers(self) -> tuple[AroundHandle | None, AroundSend | None]:
        """The overridden hooks, as layers (None for a hook left as it is)."""
        cls = type(self)
        handle = self.handle if cls.handle is not Middleware.handle else None
        send = self.send if cls.send is not Middleware.send else None
        return handle, send


def compose_handle(layers: Sequence[AroundHandle], inner: NextHandle) -> NextHandle:
    """``inner`` wrapped in ``layers``, the first outermost."""
    for layer in reversed(layers):
        inner = _bind_handle(layer, inner)
    return inner


def compose_send(layers: Sequence[AroundSend], inner: NextSend) -> NextSend:
    """``inner`` wrapped in ``layers``, the first outermost."""
    for layer in reversed(layers):
        inner = _bind_send(layer, inner)
    return inner


def _bind_handle(layer: AroundHandle, call_next: NextHandle) -> NextHandle:
    def call(handling: Handling) -> Awaitable[object]:
        return layer(handling, call_next)

    return call


def _bind_send(layer: AroundSend, call_next: NextSend) -> NextSend:
    def call(out: Outgoing) -> Awaitable[None]:
        return layer(out, call_next)

    return call
