"""The per-process core every context and consumer shares.

A :class:`Node` holds one process's transport, clock, codec, type registry
and upcaster chains, its reply inbox and the reply table, the resources its
lifespans opened and the around-send middleware chains, and builds envelopes:
ids, timestamps, correlation, causation and deadline inheritance all happen
here, once. It also reads payloads back, each in the major version it was
written in or lifted by an upcaster to one this process has a class for.
"""

from __future__ import annotations

from collections.abc import Awaitable, Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol

import msgspec

from .._clock import Clock, TimerHeap
from .._exceptions import ConfigurationError, DecodeError
from .._messages.codec import Codec, codec_for
from .._messages.envelope import Message
from .._messages.ids import uuid7
from .._messages.payload import Kind, Payload, TypeRegistry, major, schema_uri, schema_version
from .._messages.sharing import shareable
from .._messages.upcast import Upcaster, Upcasters, lift, plan
from .._tasks import TaskScope
from .._transport import Transport, reply_inbox
from ..discovery import BreakerState
from .lifespan import Resources
from .middleware import AroundSend, NextSend, Outgoing, compose_send
from .replies import Done, Failure, ReplyTable
from .sends import SendQueue

if TYPE_CHECKING:
    from ..discovery.registry import Registry
    from ..resilience import CallPolicy, Guards, Policies
    from .context import Context, Reply

__all__ = ["SENDS_TO_LIMIT", "Node", "PolicyCalls"]

SENDS_TO_LIMIT = 64
"""Channels a service's heartbeat lists as sent to, at most (bounded memory and beats)."""


class PolicyCalls(Protocol):
    """Requests and sends under a call policy (:mod:`.guarded`), as the context calls them:
    guarded as calls to ``channel`` (its policy, breaker and bulkhead), published to ``to``
    (the same channel, or the instance channel a route picked)."""

    def request(
        self,
        ctx: Context,
        channel: str,
        command: Payload,
        returns: type[Payload] | None,
        timeout: float | None,
        key: str | None,
        subject: str | None,
        policy: CallPolicy | None,
        to: str,
    ) -> Reply[Any]: ...

    async def send(
        self,
        ctx: Context,
        channel: str,
        message: Message,
        not_before: float | None,
        priority: int,
        policy: CallPolicy | None,
        to: str,
    ) -> None: ...


class InlineTarget(Protocol):
    """A consumer that may answer a request of this process in the requester's task
    (the dispatcher of a ``requests="direct"`` service on an in-process transport)."""

    def claim(self, message: Message, carried: object) -> object | None:
        """A place for ``message`` now, or None: publish it as usual."""
        ...

    async def run_inline(self, item: Any) -> None:
        """Handle what :meth:`claim` took; its reply goes to the reply table."""
        ...


_NO_EXTENSIONS = (None, None, None, None, None)


class _Carrier(Protocol):
    """A transport that may keep a payload object with its message, in-process."""

    handed: tuple[Message, object] | None


class Node:
    """One process's shared runtime state."""

    def __init__(
        self,
        *,
        transport: Transport,
        clock: Clock,
        codec: Codec,
        registry: TypeRegistry,
        instance: str,
        tasks: TaskScope,
        upcasters: Upcasters | None = None,
    ) -> None:
        self.transport = transport
        self.clock = clock
        self.codec = codec
        self.registry = registry
        self.upcasters = Upcasters() if upcasters is None else upcasters
        """Every service's upcasters in this process, as one set of chains."""
        self.instance = instance
        self.inbox = reply_inbox(instance)
        self.replies = ReplyTable()
        self.tasks = tasks
        self.timers = TimerHeap(clock)
        """For per-message deadlines: cheaper to arm and cancel than the clock's own timers."""
        self.sends = SendQueue(transport, tasks)
        self.resources = Resources()
        """What the lifespans yielded, for ``ctx.resource(fn)``."""
        self.send_chains: dict[str, NextSend] | None = None
        """Around-send chains by sending service (``""``: everyone else); None: no middleware."""
        self.guards: Guards | None = None
        """Breakers and bulkheads of the targets called; None: no call policy configured."""
        self.policy_calls: PolicyCalls | None = None
        """How a call under a policy goes (set by the system; see :mod:`.guarded`)."""
        self.discovery: Registry | None = None
        """What this process heard on the service registry (None: it does not listen)."""
        self.routing: Policies | None = None
        """The call policies, when one names a routing strategy and this process listens
        to the registry (None: a call without ``route=`` goes to the shared channel)."""
        self.sent_to: dict[str, set[str]] = {}
        """By service of this process, the channels it sent, published, requested or
        gathered to (at most :data:`SENDS_TO_LIMIT` each), for its heartbeat."""
        self.inline: dict[str, InlineTarget] = {}
        """Channels whose requests from this process may be answered in the requester's
        task, with their consumer here (see :meth:`Dispatcher.claim`); set by the system."""
        self._schemas: dict[type[Payload], str] = {}
        self._carrier: _Carrier | None = (
            transport if getattr(transport, "carries_payloads", False) else None  # type: ignore[assignment]
        )
        self.carries_payloads = self._carrier is not None
        """Whether a payload object may travel with its message (see :meth:`handed`)."""
        self._stamp_ms = -1
        self._stamp = datetime.fromtimestamp(0, UTC)
        registry.register(Failure)
        registry.register(Done)

    def note_sent(self, service: str, channel: str) -> None:
        """``service`` (of this process; others are not counted) sent to ``channel``."""
        seen = self.sent_to.get(service)
        if seen is not None and len(seen) < SENDS_TO_LIMIT:
            seen.add(channel)

    def breaker_states(self) -> tuple[BreakerState, ...]:
        """The state of every circuit breaker this process holds as a caller, by target."""
        if self.guards is None:
            return ()
        return tuple(
            BreakerState(target=b.target, state=b.state, failure_rate=b.failure_rate)
            for b in self.guards.breakers()
        )

    def use_send_layers(
        self, layers: Sequence[AroundSend], by_service: Mapping[str, Sequence[AroundSend]]
    ) -> None:
        """Send through ``layers`` (everyone's, outermost) and each service's own inside them."""
        if not layers and not any(by_service.values()):
            return
        chains = {
            name: compose_send([*layers, *own], self._publish) for name, own in by_service.items()
        }
        chains[""] = compose_send(layers, self._publish)
        self.send_chains = chains
        self.sends.publish = self._publish_request

    def send(self, out: Outgoing) -> Awaitable[None]:
        """Publish ``out`` through the middleware of its service (only with middleware)."""
        chains = self.send_chains
        assert chains is not None
        return (chains.get(out.service) or chains[""])(out)

    def _publish(self, out: Outgoing) -> Awaitable[None]:
        """The end of every send chain: the transport."""
        return self.transport.publish(
            out.channel, out.message, not_before=out.not_before, priority=out.priority
        )

    def _publish_request(self, channel: str, message: Message) -> Awaitable[None]:
        out = Outgoing(channel=channel, message=message, kind="request", service=message.source)
        return self.send(out)

    def envelope(
        self,
        payload: Payload,
        *,
        source: str,
        cause: Message | None = None,
        kind: Kind | None = None,
        key: str | None = None,
        subject: str | None = None,
        deadline: float | None = None,
        replyto: str | None = None,
    ) -> Message:
        """A new message carrying ``payload``, tied to the message that caused it."""
        cls = type(payload)
        schema = self._schemas.get(cls) or self._schema(cls, payload)
        message_id = uuid7()
        ms = int(self.clock.time() * 1000)
        if ms != self._stamp_ms:  # one datetime per millisecond, as ids carry it
            self._stamp_ms, self._stamp = ms, datetime.fromtimestamp(ms / 1000, UTC)
        # Only the attributes that carry something are passed: the constructor of a
        # Struct this wide costs several times more at 16 keywords than at 10, and a
        # replace() after it costs three times a constructor of 12.
        data, codec = self.codec.encode(payload), self.codec
        if cause is not None and key is subject is replyto is None and deadline is None:
            message = Message(  # a reply, or what a handler sends: its cause's attributes
                id=message_id,
                type=cls.type_name,
                source=source,
                time=self._stamp,
                data=data,
                kind=kind or cls.kind,
                datacontenttype=codec.content_type,
                dataschema=schema,
                correlationid=cause.correlationid or cause.id,
                causationid=cause.id,
                traceparent=cause.traceparent,
                tracestate=cause.tracestate,
            )
        elif cause is None and key is subject is None and replyto is not None:
            message = Message(  # a request from outside any handler: no replace() after
                id=message_id,
                type=cls.type_name,
                source=source,
                time=self._stamp,
                data=data,
                kind=kind or cls.kind,
                datacontenttype=codec.content_type,
                dataschema=schema,
                correlationid=message_id,
                replyto=replyto,
                deadline=None if deadline is None else datetime.fromtimestamp(deadline, UTC),
            )
        else:
            message = Message(
                id=message_id,
                type=cls.type_name,
                source=source,
                time=self._stamp,
                data=data,
                kind=kind or cls.kind,
                datacontenttype=codec.content_type,
                dataschema=schema,
                correlationid=message_id if cause is None else cause.correlationid or cause.id,
            )
            extensions = (cause, key, subject, deadline, replyto)
            if extensions != _NO_EXTENSIONS:  # most events: nothing more to set
                message = _with_extensions(message, *extensions)
        carrier = self._carrier
        if carrier is not None:  # an in-process transport may keep the object with it
            carrier.handed = (message, payload)
        return message

    def _schema(self, cls: type[Any], payload: object) -> str:
        if not isinstance(payload, Payload):
            raise ConfigurationError(
                f"messages carry Command, Event or Document instances; got a "
                f"{cls.__qualname__} ({payload!r:.60}): declare it as a payload class"
            )
        schema = self._schemas[cls] = schema_uri(cls)
        return schema

    def handed(self, message: Message, into: type[Payload]) -> Payload | None:
        """The payload object ``message`` was just built from in this process (a reply
        answered in-process), when it is an ``into`` and that class is immutable all the
        way down; else None (decode it). No decode, no copy."""
        carrier = self._carrier
        if carrier is None:
            return None
        handed = carrier.handed
        if handed is None or handed[0] is not message:
            return None
        payload = handed[1]
        return payload if type(payload) is into and shareable(into) else None

    def decode(self, message: Message, into: type[Payload] | None = None) -> Payload:
        """The payload of ``message``, as ``into`` or else the class of its type name.

        Either way in the major version it names, lifted by the upcasters if need be;
        :class:`~seawall.UnknownVersion` if it cannot be.
        """
        schemas = self._schemas
        if into is not None and message.dataschema == (schemas.get(into) or self._schema_of(into)):
            carrier = self._carrier
            if carrier is not None:  # a reply answered in-process: the envelope just built?
                handed = carrier.handed
                if (
                    handed is not None
                    and handed[0] is message
                    and type(handed[1]) is into
                    and shareable(into)
                ):
                    return handed[1]
            return self.read(message, into, ())  # the common case: written in this very version
        classes = self.registry.versions(message.type) if into is None else _by_major(into)
        cls, steps = plan(
            message.type,
            schema_version(message.dataschema),
            classes,
            self.upcasters,
            reader=f"this process ({self.instance})" if into is None else into.__qualname__,
        )
        return self.read(message, cls, steps)

    def _schema_of(self, cls: type[Payload]) -> str:
        schema = self._schemas.get(cls)
        if schema is None:
            schema = self._schemas[cls] = schema_uri(cls)
        return schema

    def read(self, message: Message, cls: type[Payload], steps: tuple[Upcaster, ...]) -> Payload:
        """The payload of ``message`` as ``cls``, through the upcasters ``steps`` first."""
        try:
            codec = codec_for(message.datacontenttype)
            if not steps:
                return codec.decode(message.data, cls)
            return _lifted(codec, message.data, cls, steps)
        except DecodeError as exc:
            raise DecodeError(f"message {message.id} ({message.type}): {exc}") from None

    async def reply(self, request: Message, payload: Payload, *, source: str) -> Message | None:
        """Send ``payload`` to the requester's inbox, as the reply to ``request``.

        A requester in this process is answered directly: its inbox is this
        node's, an ephemeral channel with nothing to keep, so the round trip
        through the broker would add only latency (the request itself did go
        through the broker, durably). Like the inbox, a reply nobody waits for
        any more is dropped.
        """
        replyto = request.replyto
        if replyto is None:
            return None
        if replyto == self.inbox:
            return self.reply_here(request, payload, source=source)
        message = self.envelope(payload, source=source, cause=request, kind="document")
        if self.send_chains is None:
            await self.transport.publish(replyto, message)
        else:
            await self.send(
                Outgoing(channel=replyto, message=message, kind="reply", service=source)
            )
        return message

    def reply_here(self, request: Message, payload: Payload, *, source: str) -> Message:
        """:meth:`reply` to a request made in this process (``request.replyto`` is this
        node's inbox): handed to its waiter at once, no coroutine needed."""
        message = self.envelope(payload, source=source, cause=request, kind="document")
        self.replies.deliver(message)  # on_inbox, inline
        return message

    async def reply_again(self, request: Message, reply: Message, *, source: str) -> None:
        """Send a reply given before once more, to a repeat of ``request`` (a reply cache hit)."""
        replyto = request.replyto
        if replyto is None:
            return
        if replyto == self.inbox:
            self.on_inbox(reply)
        elif self.send_chains is None:
            await self.transport.publish(replyto, reply)
        else:
            await self.send(Outgoing(channel=replyto, message=reply, kind="reply", service=source))

    async def reply_failure(self, request: Message, exc: BaseException, *, service: str) -> None:
        """Tell the requester that its request failed, with the error's type and text."""
        error_type = type(exc).__name__
        text = str(exc) or error_type
        await self.reply(
            request, Failure(error_type=error_type, message=text, service=service), source=service
        )

    def on_inbox(self, message: Message) -> bool:
        """A reply arrived in this node's inbox; False if nobody waits for it."""
        return self.replies.deliver(message)


def _by_major(cls: type[Payload]) -> dict[str, type[Payload]]:
    return {major(cls.type_version): cls}


def _lifted(codec: Codec, data: bytes, into: type[Payload], steps: tuple[Upcaster, ...]) -> Payload:
    """``data`` decoded as plain fields, upcast, and read as ``into``."""
    fields = codec.decode(data, dict[str, Any])
    try:
        return lift(fields, steps, into)
    except msgspec.ValidationError as exc:
        raise DecodeError(f"upcast to {into.__qualname__}, it does not fit: {exc}") from exc
    except Exception as exc:  # the upcaster is the user's code: any error means "unreadable"
        raise DecodeError(
            f"an upcaster to {into.__qualname__} ({', '.join(map(_name, steps))}) failed: "
            f"{type(exc).__name__}: {exc}"
        ) from exc


def _name(fn: object) -> str:
    return getattr(fn, "__qualname__", None) or repr(fn)


def _with_extensions(
    message: Message,
    cause: Message | None,
    key: str | None,
    subject: str | None,
    deadline: float | None,
    replyto: str | None,
) -> Message:
    """``message`` with causation, trace context, key, subject, deadline and reply-to set."""
    return msgspec.structs.replace(
        message,
        causationid=None if cause is None else cause.id,
        traceparent=None if cause is None else cause.traceparent,
        tracestate=None if cause is None else cause.tracestate,
        partitionkey=key,
        subject=subject,
        deadline=None if deadline is None else datetime.fromtimestamp(deadline, UTC),
        replyto=replyto,
    )


def payload_or_none(node: Node, message: Message, into: type[Payload] | None) -> Any:
    """The decoded reply, ``None`` for :class:`Done`."""
    if message.type == Done.type_name:
        return None
    exact = into is not None and into.type_name == message.type
    return node.decode(message, into if exact else None)
