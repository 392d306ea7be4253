"""Services and their handlers.

A :class:`Service` is a named unit that owns its state and reacts to
messages. Handlers are registered by decorator and typed by annotation::

    orders = Service("orders")

    @orders.command
    async def create_order(cmd: CreateOrder, ctx: Context) -> OrderCreated: ...

    @orders.subscribe("payments.events")
    async def on_payment(event: PaymentAuthorized | PaymentDeclined, ctx: Context) -> None: ...

Command handlers read the service's command channel (named like the
service); what they return is the reply document. Subscriptions read any
channel as a consumer group (the service name unless given). The payload
type comes from the first parameter's annotation (a union means several
types); a second parameter, if present, receives the :class:`Context`.
"""

from __future__ import annotations

import inspect
import types
import typing
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from .._exceptions import ConfigurationError
from .._messages.payload import Payload
from .._transport import Start
from .retry import RetryPolicy

__all__ = ["Handler", "Service", "Subscription", "reply_types"]

H = TypeVar("H", bound=Callable[..., Awaitable[Any]])


@dataclass(frozen=True, slots=True)
class Handler:
    """One registered handler: the payload types it takes and how to call it."""

    name: str
    fn: Callable[..., Awaitable[Any]]
    types: tuple[type[Payload], ...]
    wants_context: bool
    returns: type[Payload] | None


@dataclass(kw_only=True)
class Subscription:
    """The handlers a service runs on one channel as one consumer group."""

    channel: str
    group: str
    is_command_channel: bool
    concurrency: int
    """Handlers running at once (the worker pool)."""
    prefetch: int
    """Deliveries held at once: working, queued behind their key, or waiting for a retry.
    Later messages of a key that waits for a retry queue here, so other keys keep
    flowing as long as that backlog fits; past it the subscription waits (bounded memory)."""
    retry: RetryPolicy
    start: Start = "earliest"
    """Where the group starts the first time it subscribes (replay needs a transport
    with ``Capabilities.replay``)."""
    handlers: dict[str, Handler] = field(default_factory=dict)
    """Handler by message type name."""

    def add(self, handler: Handler) -> None:
        for cls in handler.types:
            known = self.handlers.get(cls.type_name)
            if known is not None:
                raise ConfigurationError(
                    f"{handler.name} and {known.name} both handle {cls.type_name!r} on channel "
                    f"{self.channel!r} (group {self.group!r}); one handler per type per group"
                )
            self.handlers[cls.type_name] = handler


class Service:
    """A named service: its command handlers and its subscriptions."""

    def __init__(
        self,
        name: str,
        *,
        concurrency: int = 64,
        prefetch: int | None = None,
        retry: RetryPolicy | None = None,
        partitions: int = 1,
    ) -> None:
        if not name or any(c.isspace() or c in ":/" for c in name) or name.startswith("_"):
            raise ConfigurationError(
                f"service name {name!r} must be non-empty, without spaces, ':' or '/', and not "
                "start with '_'"
            )
        self.name = name
        if concurrency < 1 or (prefetch is not None and prefetch < concurrency):
            raise ConfigurationError(
                f"service {name}: need concurrency >= 1 and prefetch >= concurrency, got "
                f"concurrency={concurrency}, prefetch={prefetch}"
            )
        self.concurrency = concurrency
        self.prefetch = prefetch or 4 * concurrency
        self.retry = retry or RetryPolicy()
        self.partitions = partitions
        self.subscriptions: dict[tuple[str, str], Subscription] = {}

    @property
    def events_channel(self) -> str:
        """Where this service publishes its events by default."""
        return f"{self.name}.events"

    def command(self, fn: H) -> H:
        """Register a command handler on this service's command channel."""
        self._register(fn, self.name, self.name, True, None, None, "earliest")
        return fn

    def subscribe(
        self,
        channel: str,
        *,
        group: str | None = None,
        concurrency: int | None = None,
        retry: RetryPolicy | None = None,
        start: Start = "earliest",
    ) -> Callable[[H], H]:
        """Register a handler for messages on ``channel``, consumed as ``group``.

        ``start`` says where a new group begins: ``"earliest"`` (every message the
        channel still holds), ``"latest"``, or a replay point (:class:`FromOffsets`,
        :class:`FromTime`). It applies only the first time the group subscribes.
        """

        def register(fn: H) -> H:
            self._register(fn, channel, group or self.name, False, concurrency, retry, start)
            return fn

        return register

    def _register(
        self,
        fn: Callable[..., Awaitable[Any]],
        channel: str,
        group: str,
        is_command: bool,
        concurrency: int | None,
        retry: RetryPolicy | None,
        start: Start,
    ) -> None:
        handler = _inspect_handler(fn, f"{self.name}.{fn.__name__}")
        sub = self.subscriptions.get((channel, group))
        if sub is None:
            sub = self.subscriptions[(channel, group)] = Subscription(
                channel=channel,
                group=group,
                is_command_channel=is_command,
                concurrency=concurrency or self.concurrency,
                prefetch=4 * concurrency if concurrency else self.prefetch,
                retry=retry or self.retry,
                start=start,
            )
        elif start != sub.start:
            raise ConfigurationError(
                f"{self.name}: handlers of group {group!r} on channel {channel!r} ask for "
                f"different starts ({sub.start!r} and {start!r}); give them one"
            )
        sub.add(handler)

    def payload_types(self) -> set[type[Payload]]:
        """Every payload class this service's handlers take or return."""
        found: set[type[Payload]] = set()
        for sub in self.subscriptions.values():
            for handler in sub.handlers.values():
                found.update(handler.types)
                if handler.returns is not None:
                    found.add(handler.returns)
        return found


def _inspect_handler(fn: Callable[..., Awaitable[Any]], name: str) -> Handler:
    if not inspect.iscoroutinefunction(fn):
        raise ConfigurationError(f"handler {name} must be an 'async def' function")
    params = list(inspect.signature(fn).parameters.values())
    if not 1 <= len(params) <= 2:
        raise ConfigurationError(
            f"handler {name} must take (message) or (message, ctx); it takes {len(params)} "
            "parameters"
        )
    try:
        hints = typing.get_type_hints(fn)
    except NameError as exc:
        raise ConfigurationError(f"handler {name}: cannot resolve an annotation: {exc}") from exc
    first = hints.get(params[0].name)
    payload_types = _payload_types(first)
    if not payload_types:
        raise ConfigurationError(
            f"handler {name}: annotate its first parameter with a Command, Event or Document "
            f"class (or a union of them); found {first!r}"
        )
    ret = hints.get("return")
    if isinstance(ret, type) and not issubclass(ret, Payload) and ret not in _ANY_RETURN:
        raise ConfigurationError(
            f"handler {name} is annotated to return {ret.__name__}; a handler returns a "
            "Command, Event or Document (sent back to a requester) or None"
        )
    returns = ret if isinstance(ret, type) and issubclass(ret, Payload) else None
    return Handler(name, fn, payload_types, len(params) == 2, returns)


_ANY_RETURN: tuple[object, ...] = (type(None), object, Any)
"""Return annotations that say nothing against a payload."""


def _payload_types(annotation: Any) -> tuple[type[Payload], ...]:
    if isinstance(annotation, type) and issubclass(annotation, Payload):
        return (annotation,)
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        members = typing.get_args(annotation)
        if all(isinstance(m, type) and issubclass(m, Payload) for m in members):
            return tuple(members)
    return ()


def reply_types(fn: Callable[..., Any]) -> dict[str, type[Payload]]:
    """The payload classes a handler is annotated to return (a union: each), by type name.

    For wrappers that keep a handler's reply to give it again, e.g. to a repeated message.
    """
    try:
        returns = typing.get_type_hints(fn).get("return")
    except NameError:
        return {}
    members = typing.get_args(returns) or (returns,)
    return {m.type_name: m for m in members if isinstance(m, type) and issubclass(m, Payload)}
