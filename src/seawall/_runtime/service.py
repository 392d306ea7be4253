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

Versions: a group takes each payload class it handles in that class's major
version. Two classes of one type name in two majors (``ItemV1`` at 1.2.0,
``Item`` at 2.0.0) may each have a handler, and each message goes to the one
of its major (its ``dataschema``). A major no handler takes is lifted by the
service's upcasters (:meth:`Service.upcaster`, the same chains the event store
reads old events with) to one a handler takes, or else dead-lettered as
``unknown-version``.

Expiry: a message whose deadline passed before it was handled (or while it
was) is not worked on; by default it is dead-lettered with reason ``expired``,
so something records that it existed; ``Service(..., expired="drop")`` drops
it instead, counted only in the dispatcher's ``Stats.expired``. Requests and
one-way commands alike: the requester, if it still waits, gets
``DeadlineExceeded`` either way.

A service may also carry middleware (:mod:`.middleware`: ``@orders.around_handle``,
``@orders.around_send``, ``orders.use(Middleware())``), which wraps its own
handlers and sends inside the system's, and lifespans (:mod:`.lifespan`:
``@orders.lifespan``), resources opened once per process before its handlers
run.
"""

from __future__ import annotations

import inspect
import types
import typing
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, TypeVar, get_args, overload

import msgspec

from .._exceptions import ConfigurationError
from .._messages.payload import Payload, major
from .._messages.upcast import Upcaster, Upcasters
from .._transport import RequestPath, Start
from .lifespan import LifespanFunction, check_lifespan
from .middleware import AroundHandle, AroundSend, Middleware
from .retry import RetryPolicy

if TYPE_CHECKING:
    from ..resilience import ReplyStore

__all__ = ["Expired", "Handler", "Service", "Subscription", "reply_types"]

H = TypeVar("H", bound=Callable[..., Awaitable[Any]])
U = TypeVar("U", bound=Upcaster)
Old = TypeVar("Old", bound=Payload)
New = TypeVar("New", bound=Payload)

Expired = Literal["dead-letter", "drop"]
"""What a service does with a message whose deadline passed before it was handled."""

AH = TypeVar("AH", bound=AroundHandle)
AS = TypeVar("AS", bound=AroundSend)
L = TypeVar("L", bound=LifespanFunction)


class Handler(msgspec.Struct, frozen=True):
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
    expired: Expired = "dead-letter"
    """What becomes of a message whose deadline passed before it was handled."""
    depends_on: tuple[str, ...] = ()
    """Targets whose open breaker pauses this consumer instead of failing its messages."""
    reply_cache: int = 1024
    """Replies kept in memory to answer repeated requests (command channels)."""
    reply_store: ReplyStore | None = None
    """Where replies are also kept durably, if the service asks."""
    handlers: dict[type[Payload], Handler] = field(default_factory=dict)
    """Handler by payload class."""
    versions: dict[str, dict[str, type[Payload]]] = field(default_factory=dict)
    """The payload classes the group takes, by type name and major version."""

    def add(self, handler: Handler) -> None:
        for cls in handler.types:
            majors = self.versions.setdefault(cls.type_name, {})
            known = majors.get(major(cls.type_version))
            if known is not None:
                raise ConfigurationError(
                    f"{handler.name} and {self.handlers[known].name} both handle "
                    f"{cls.type_name!r} version {major(cls.type_version)}.x on channel "
                    f"{self.channel!r} (group {self.group!r}); one handler per type and major "
                    "version per group"
                )
            majors[major(cls.type_version)] = cls
            self.handlers[cls] = handler


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
        upcasters: Upcasters | None = None,
        expired: Expired = "dead-letter",
        depends_on: Sequence[str] = (),
        reply_cache: int = 1024,
        reply_store: ReplyStore | None = None,
        sync_requests: bool = True,
        requests: RequestPath = "stored",
    ) -> None:
        """``upcasters``: chains to share, e.g. an event codec's; ``expired``: see the module.

        ``depends_on``: target channels this service's handlers call; while a target's
        circuit breaker is open, the consumers stop taking messages and hold those
        whose handler failed on it, instead of spending their attempts (the breaker
        comes from the system's call policies). ``reply_cache``: replies kept in
        memory by request id, so a repeated request is answered without running its
        handler again; ``reply_store`` keeps them durably too (see
        :mod:`seawall.resilience.replies`). ``sync_requests``: see
        :attr:`seawall.ChannelSpec.sync_requests` (its command channel). ``requests``:
        ``"direct"`` hands requests to its command channel to a live instance without
        storing them, see :attr:`seawall.ChannelSpec.requests`; on an in-process
        transport (``memory://``) a request made in this process may then run its
        handler in the caller's task (see
        :meth:`seawall._runtime.dispatcher.Dispatcher.claim`).
        """
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
        self.sync_requests = sync_requests
        self.requests: RequestPath = requests
        if expired not in get_args(Expired):
            raise ConfigurationError(
                f"service {name}: expired={expired!r}; say 'dead-letter' (the default: the "
                "message is kept in the dead-letter channel) or 'drop'"
            )
        self.expired: Expired = expired
        if isinstance(depends_on, str):
            raise ConfigurationError(
                f"service {name}: depends_on takes a list of target channels, got the string "
                f"{depends_on!r}; write [{depends_on!r}]"
            )
        self.depends_on = tuple(depends_on)
        if reply_cache < 1:
            raise ConfigurationError(
                f"service {name}: reply_cache must keep 1 reply at least, got {reply_cache}"
            )
        self.reply_cache = reply_cache
        self.reply_store = reply_store
        self.upcasters = Upcasters() if upcasters is None else upcasters
        """The chains that lift old major versions of the messages this service reads."""
        self.subscriptions: dict[tuple[str, str], Subscription] = {}
        self.handle_layers: list[AroundHandle] = []
        """Around-handle middleware of this service's handlers, outermost first."""
        self.send_layers: list[AroundSend] = []
        """Around-send middleware of what this service's handlers send, outermost first."""
        self.lifespans: list[LifespanFunction] = []
        self.middleware: list[Middleware] = []
        """The :class:`Middleware` objects given to :meth:`use` (attached to each system)."""

    def around_handle(self, fn: AH) -> AH:
        """Register middleware around each of this service's handler calls (decorator)."""
        self.handle_layers.append(fn)
        return fn

    def around_send(self, fn: AS) -> AS:
        """Register middleware around each send this service's handlers make (decorator)."""
        self.send_layers.append(fn)
        return fn

    def use(self, *middleware: Middleware) -> None:
        """Add :class:`Middleware` objects, after the layers already registered."""
        for each in middleware:
            self.middleware.append(each)
            handle, send = each.layers()
            if handle is not None:
                self.handle_layers.append(handle)
            if send is not None:
                self.send_layers.append(send)

    def lifespan(self, fn: L) -> L:
        """Register a lifespan whose resource handlers reach with ``ctx.resource(fn)``."""
        check_lifespan(fn, f"service {self.name}")
        self.lifespans.append(fn)
        return fn

    @property
    def events_channel(self) -> str:
        """Where this service publishes its events by default."""
        return f"{self.name}.events"

    def command(self, fn: H) -> H:
        """Register a command handler on this service's command channel."""
        self._register(fn, self.name, self.name, True, None, None, "earliest")
        return fn

    @overload
    def upcaster(self, fn: Callable[[Old], New], /) -> Callable[[Old], New]: ...

    @overload
    def upcaster(
        self, type_name: str, from_version: str, to_version: str, /
    ) -> Callable[[U], U]: ...

    def upcaster(self, *args: Any) -> Any:
        """Register an upcaster, so this service reads an older major version of a message.

        Typed, while the old class is still around::

            @shop.upcaster
            def item_v2(old: ItemV1) -> Item:
                return Item(sku=old.sku, cents=round(old.price * 100))

        or on the fields (a ``dict``), naming the type and versions::

            @shop.upcaster("shop.Item", "1.0.0", "2.0.0")
            def item_v2(fields: dict[str, Any]) -> dict[str, Any]: ...

        A step climbs at least one major version; chains are followed step by step
        until a handler's major is reached (see :class:`~seawall.Upcasters`).
        """
        return self.upcasters.upcaster(*args)

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
                expired=self.expired,
                depends_on=self.depends_on,
                reply_cache=self.reply_cache,
                reply_store=self.reply_store,
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
