"""The context a handler (or a client) uses to talk to other services.

All five interaction styles live here:

* one-way notification: :meth:`Context.send` a command, no reply expected;
* publish/subscribe: :meth:`Context.publish` an event to every subscribing group;
* request/response: ``await ctx.request(...)``;
* asynchronous request/response: ``reply = ctx.request(...)`` sends at once,
  ``await reply`` later;
* publish/async responses (scatter-gather): :meth:`Context.gather` collects
  replies until a count or the deadline and returns what arrived.

Every request carries an absolute deadline. Inside a handler the remaining
budget of the message being handled caps it, so nested requests inherit it.

Every send goes through the around-send middleware when there is any
(:mod:`.middleware`), and :meth:`Context.resource` reaches what a lifespan
opened (:mod:`.lifespan`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Generator
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING, Any, Generic, TypeVar, overload

from .._clock import Clock, timeout_at
from .._exceptions import (
    ConfigurationError,
    DeadlineExceeded,
    MessageError,
    RemoteError,
    UnexpectedReply,
    UnknownVersion,
)
from .._messages.envelope import Message
from .._messages.payload import Payload
from .._transport import Transport
from .middleware import Outgoing
from .node import SENDS_TO_LIMIT, InlineTarget, Node, PolicyCalls, payload_or_none
from .replies import Done, Failure
from .sends import PendingSend

if TYPE_CHECKING:
    from .._transport.ownership import Fence
    from ..discovery.registry import Registry
    from ..resilience import CallPolicy

__all__ = ["Context", "Reply"]

R = TypeVar("R", bound=Payload)
T = TypeVar("T")

log = logging.getLogger("seawall.context")

DEFAULT_TIMEOUT = 30.0


class Reply(Generic[R]):
    """The pending reply to a request; await it now or later."""

    __slots__ = (
        "_channel",
        "_deadline",
        "_future",
        "_inline",
        "_into",
        "_node",
        "_request",
        "_send",
        "_sender",
        "_timed_out",
    )

    def __init__(
        self,
        node: Node,
        channel: str,
        request: Message,
        into: type[R] | None,
        send: PendingSend,
        future: asyncio.Future[list[Message]],
        deadline: float | None,
        inline: tuple[InlineTarget, Payload] | None = None,
    ) -> None:
        self._node = node
        self._channel = channel
        self._request = request
        self._into = into
        self._send = send
        self._future = future
        self._deadline = deadline
        self._sender: asyncio.Task[Any] | None = None
        """The task publishing the request, while it does."""
        self._timed_out = False
        self._inline = inline
        """The consumer in this process that may answer it in the awaiting task, and the
        payload object it was made with (see :meth:`_answer_here`); None: publish it."""

    def _expire(self) -> None:
        """The deadline's timer: interrupt the send if it is still going, else fail the wait."""
        sender = self._sender
        if sender is not None:
            self._timed_out = True
            sender.cancel()
        elif not self._future.done():
            self._future.set_exception(TimeoutError())

    def _exceeded(self, what: str) -> DeadlineExceeded:
        sent_at = self._request.time.timestamp() if self._request.time else 0.0
        budget = (self._deadline or sent_at) - sent_at
        request = f"{self._request.type} ({self._request.id})"
        if what == "answered":
            text = f"no reply from {self._channel!r} to {request}"
        else:
            text = f"could not send {request} to {self._channel!r} (the transport did not take it)"
        return DeadlineExceeded(f"{text} within its {budget:.3g} s deadline")

    def _not_sent(self) -> DeadlineExceeded:
        """Give up a request whose deadline passed before the transport took it."""
        self._node.replies.forget(self._request.id)
        if not self._future.done():
            self._future.cancel()
        return self._exceeded("sent")

    async def _answer_here(self, claimed: object) -> None:
        """Run the request's handler in this task, its consumer having taken a place for it.

        The reply (or failure) reaches this request's entry in the reply table, as from a
        worker; a retry the handler's failure calls for goes to the channel and its reply
        comes as usual. Cancelled, the handler is cancelled with this task.
        """
        assert self._inline is not None
        try:
            await self._inline[0].run_inline(claimed)
        except BaseException:
            self._node.replies.forget(self._request.id)
            raise

    @property
    def request_id(self) -> str:
        return self._request.id

    def __await__(self) -> Generator[Any, None, R]:
        return self._wait().__await__()

    async def _wait(self) -> R:
        # One timer bounds both the send (a publish that waits for a broken link must
        # not hold the requester past the deadline: the timer cancels the sending task,
        # as timeout_at would) and the wait for the reply (there it fails the future,
        # rather than cancelling the task and taking the cancellation back).
        node = self._node
        deadline = self._deadline
        if deadline is not None and deadline <= node.clock.time():
            raise self._not_sent()
        inline = self._inline
        if inline is not None and node.sends.alone(self._send):  # nothing queued before it
            claimed = inline[0].claim(self._request, inline[1])
            if claimed is not None:
                node.sends.withdraw(self._send)
                await self._answer_here(claimed)
        timer = None
        if deadline is not None and not self._future.done():
            timer = node.timers.call_at(deadline, self._expire)
        answered = False
        try:
            if not self._send.taken:
                task = self._sender = asyncio.current_task()
                assert task is not None, "a reply is awaited inside a task"
                baseline = task.cancelling()
                try:
                    await node.sends.send_through(self._send)  # a failed send fails the future
                except asyncio.CancelledError:
                    if not self._timed_out or task.uncancel() > baseline:
                        raise
                    raise self._not_sent() from None
                finally:
                    self._sender = None
            replies = await self._future
            answered = True
        except TimeoutError as exc:
            if isinstance(exc, DeadlineExceeded):
                raise
            raise self._exceeded("answered") from None
        finally:
            if timer is not None:
                timer.cancel()
            if not answered:  # an answered request's entry left the table with its reply
                node.replies.forget(self._request.id)
        reply, into = replies[0], self._into
        if into is not None and into is not Failure:  # a Failure raises, in _unwrap
            kept = node.handed(reply, into)  # answered in this process: its very object
            if kept is not None:
                return kept  # type: ignore[return-value]
        result: R = _unwrap(node, reply, into)
        return result


def _registry(node: Node, route: str) -> Registry:
    """The process's registry, which routing needs; a clear error if it has none."""
    if node.discovery is None:
        raise ConfigurationError(
            f"route={route!r} picks among the live instances the registry announces, but "
            "this system does not listen to the registry (System(registry=False), or a "
            "TestSystem); leave route out to use the shared channel"
        )
    return node.discovery


def _track(registry: Registry, instance: str, future: asyncio.Future[Any], sent: float) -> None:
    """Count a routed request as outstanding at ``instance`` until its reply (or failure)."""
    router = registry.router
    router.started(instance)

    def done(f: asyncio.Future[Any]) -> None:
        ok = not f.cancelled() and f.exception() is None
        router.finished(instance, registry.clock.time() - sent if ok else None)

    future.add_done_callback(done)


def _configured_route(
    node: Node, channel: str, key: str | None, policy: CallPolicy | None
) -> str | None:
    """The route of a call without ``route=``: its own policy's, else the system's policy
    for ``channel`` (None: the shared channel); a sticky one without a key is refused."""
    route = None if policy is None else policy.route
    where = "this call's policy="
    if route is None and node.routing is not None:
        route = node.routing.route_for(channel)
        where = f"the system's call policy for {channel!r}"
    if route == "sticky" and key is None:
        raise ConfigurationError(
            f"a call to {channel!r} has no key=, and {where} routes it 'sticky' (by key); "
            "pass key=..., or give this target another route (e.g. CallPolicy(route="
            "'least-outstanding')), or route= on the call"
        )
    return None if route == "shared" else route


def _unwrap(node: Node, message: Message, into: type[Payload] | None) -> Any:
    if into is not None and message.type not in (into.type_name, Failure.type_name):
        got = "no payload (the handler returned None)" if message.type == Done.type_name else None
        raise UnexpectedReply(
            f"the reply {message.id} from {message.source!r} to request {message.causationid} "
            f"is {got or message.type}, not the {into.type_name} asked for with returns=; make "
            f"the handler return a {into.__name__}, or ask for what it returns"
        )
    try:
        payload = payload_or_none(node, message, into)
    except UnknownVersion as exc:
        raise UnexpectedReply(
            f"the reply {message.id} from {message.source!r} to request {message.causationid} "
            f"cannot be read: {exc}"
        ) from None
    if isinstance(payload, Failure):
        if payload.error_type == "DeadlineExceeded":
            raise DeadlineExceeded(f"{payload.service}: {payload.message}")
        raise RemoteError(payload.error_type, payload.message, payload.service)
    return payload


def _policy_calls(node: Node) -> PolicyCalls:
    calls = node.policy_calls
    if calls is None:
        raise RuntimeError("calls under a policy need a running System (async with system:)")
    return calls


def _read(node: Node, reply: Message, into: type[Payload]) -> Any:
    """A gathered reply's payload; None (skipped) for one that cannot be read here."""
    try:
        return payload_or_none(node, reply, into)
    except MessageError as exc:
        log.warning("reply %s from %r skipped: %s", reply.id, reply.source, exc)
        return None


class Context:
    """How a handler, or code outside any handler, sends messages."""

    __slots__ = ("_node", "deadline", "fence", "message", "service")

    def __init__(
        self,
        node: Node,
        service: str,
        message: Message | None = None,
        deadline: float | None = None,
        fence: Fence | None = None,
    ) -> None:
        self._node = node
        self.service = service
        self.message = message
        """The message being handled, or None outside a handler."""
        self.deadline = deadline
        """Absolute deadline (epoch seconds) of the current work, if any."""
        self.fence = fence
        """The partition lease the message was read under, on a channel whose partitions
        members own (None elsewhere): pass it to writes that depend on owning the
        message's entity (``EventStore.append(..., fence=ctx.fence)``, ``Repository``)
        so a store refuses them once another member took the partition over."""

    @property
    def now(self) -> float:
        """The clock's time, epoch seconds."""
        return self._node.clock.time()

    @property
    def clock(self) -> Clock:
        """The system's clock (virtual in tests), for code that waits or times things."""
        return self._node.clock

    @property
    def transport(self) -> Transport:
        """The system's transport, for code that publishes stored messages as they are
        (an outbox relay, a saga runner) rather than through :meth:`send`."""
        return self._node.transport

    async def sleep(self, seconds: float) -> None:
        """Wait on the system's clock, which is virtual in tests, instead of asyncio.sleep."""
        await self._node.clock.sleep(seconds)

    @overload
    def resource(self, lifespan: Callable[..., AsyncIterator[T]]) -> T: ...

    @overload
    def resource(self, lifespan: Callable[..., AbstractAsyncContextManager[T]]) -> T: ...

    def resource(self, lifespan: Callable[..., Any]) -> Any:
        """What ``lifespan`` (a lifespan of this system or a service of it) yielded."""
        return self._node.resources.get(lifespan)

    def envelope(
        self, payload: Payload, *, key: str | None = None, subject: str | None = None
    ) -> Message:
        """The message :meth:`send` or :meth:`publish` would put on a channel, unsent.

        A new id; correlation, causation and trace context from the message being
        handled. For code that delivers it another way, e.g. an outbox table.
        """
        return self._node.envelope(
            payload, source=self.service, cause=self.message, key=key, subject=subject
        )

    def _deadline_for(self, timeout: float | None) -> float:
        own = self._node.clock.time() + (DEFAULT_TIMEOUT if timeout is None else timeout)
        return own if self.deadline is None else min(own, self.deadline)

    async def send(
        self,
        channel: str,
        command: Payload,
        *,
        key: str | None = None,
        subject: str | None = None,
        not_before: float | None = None,
        priority: int = 0,
        deadline: float | None = None,
        policy: CallPolicy | None = None,
        route: str | None = None,
    ) -> None:
        """One-way notification: put ``command`` on ``channel``; no reply is expected.

        ``route`` picks the instance(s) instead of the shared channel (see
        :mod:`seawall.discovery.routing`; ``"broadcast"`` sends to every live one);
        without it, the route of ``policy`` or of the system's call policy for
        ``channel`` does, in a system that listens to the registry.

        ``not_before`` (epoch seconds) holds it back until then; ``priority`` picks a
        level on a channel declared with priority levels (higher first); past
        ``deadline`` (epoch seconds) the command is not handled: it is dead-lettered
        with reason ``expired`` (or dropped, as the receiving service chooses).
        ``policy`` goes on top of the system's call policy for ``channel``
        (:mod:`seawall.resilience`): an open breaker fails the send before it is published.
        """
        node = self._node
        message = node.envelope(
            command,
            source=self.service,
            cause=self.message,
            key=key,
            subject=subject,
            deadline=deadline,
        )
        if (seen := node.sent_to.get(self.service)) is not None and len(seen) < SENDS_TO_LIMIT:
            seen.add(channel)  # Node.note_sent, inlined on the hot path
        if (
            route is None
            and node.discovery is not None
            and (node.routing is not None or (policy is not None and policy.route is not None))
        ):
            route = _configured_route(node, channel, key, policy)
        if route is None:
            if node.guards is None and policy is None and node.send_chains is None:
                # nothing between the call and the transport: no coroutine in between either
                await node.transport.publish(
                    channel, message, not_before=not_before, priority=priority
                )
            else:
                await self._send(channel, channel, message, not_before, priority, policy)
            return
        for to, _ in _registry(node, route).targets(channel, route, key):
            await self._send(channel, to, message, not_before, priority, policy)

    async def _send(
        self,
        channel: str,
        to: str,
        message: Message,
        not_before: float | None,
        priority: int,
        policy: CallPolicy | None,
    ) -> None:
        """Put a command on ``to`` (``channel``, or the instance channel a route picked) under
        ``channel``'s call policy, and through the around-send middleware."""
        node = self._node
        if node.guards is not None or policy is not None:
            calls = _policy_calls(node)
            await calls.send(self, channel, message, not_before, priority, policy, to)
        elif node.send_chains is None:
            await node.transport.publish(to, message, not_before=not_before, priority=priority)
        else:
            out = Outgoing(
                channel=to,
                message=message,
                kind="send",
                service=self.service,
                not_before=not_before,
                priority=priority,
            )
            await node.send(out)

    async def publish(
        self,
        event: Payload,
        *,
        channel: str | None = None,
        key: str | None = None,
        subject: str | None = None,
    ) -> None:
        """Publish ``event`` to every group subscribed to ``channel`` (default: own events)."""
        node = self._node
        message = node.envelope(
            event, source=self.service, cause=self.message, key=key, subject=subject
        )
        channel = channel or f"{self.service}.events"
        if (seen := node.sent_to.get(self.service)) is not None and len(seen) < SENDS_TO_LIMIT:
            seen.add(channel)  # Node.note_sent, inlined on the hot path
        if node.send_chains is None:
            await node.transport.publish(channel, message)
        else:
            await node.send(
                Outgoing(channel=channel, message=message, kind="publish", service=self.service)
            )

    @overload
    def request(
        self,
        channel: str,
        command: Payload,
        *,
        returns: type[R],
        timeout: float | None = None,
        key: str | None = None,
        subject: str | None = None,
        policy: CallPolicy | None = None,
        route: str | None = None,
    ) -> Reply[R]: ...

    @overload
    def request(
        self,
        channel: str,
        command: Payload,
        *,
        returns: None = None,
        timeout: float | None = None,
        key: str | None = None,
        subject: str | None = None,
        policy: CallPolicy | None = None,
        route: str | None = None,
    ) -> Reply[Any]: ...

    def request(
        self,
        channel: str,
        command: Payload,
        *,
        returns: type[R] | None = None,
        timeout: float | None = None,
        key: str | None = None,
        subject: str | None = None,
        policy: CallPolicy | None = None,
        route: str | None = None,
    ) -> Reply[Any]:
        """Send ``command`` now and return its pending reply; ``await`` it at once or later.

        The reply decodes as ``returns`` (or by its type name). A failed handler
        raises :class:`RemoteError`; no reply in time raises :class:`DeadlineExceeded`.
        Under a call policy (the system's for ``channel``, ``policy`` on top; see
        :mod:`seawall.resilience`) an open breaker raises :class:`~seawall.CircuitOpen`
        and a full bulkhead that sheds :class:`~seawall.Overloaded` here, before
        anything is sent; a request without a reply in time is sent again, same id.
        A channel no service instance ever announced raises :class:`UnknownService`
        at once, without sending. ``route`` picks one live instance instead of the
        shared channel (see :mod:`seawall.discovery.routing`); without it, the route
        of ``policy`` or of the system's call policy for ``channel`` does, in a system
        that listens to the registry (a ``"sticky"`` one needs ``key``). A routed
        request is guarded as a call to ``channel``: the service's policy, breaker
        and bulkhead.

        A request to a ``requests="direct"`` service hosted in this process on an
        in-process transport may be answered in the awaiting task, its handler run
        there (see :meth:`~seawall._runtime.dispatcher.Dispatcher.claim`): when it is
        awaited before the loop's next turn and no request made before it is still
        unsent. Cancelling the await then cancels the handler.
        """
        node = self._node
        if (seen := node.sent_to.get(self.service)) is not None and len(seen) < SENDS_TO_LIMIT:
            seen.add(channel)  # Node.note_sent, inlined on the hot path
        registry = node.discovery
        instance = ""
        to = channel
        if registry is not None:
            registry.check(channel)
            if route is None and (
                node.routing is not None or (policy is not None and policy.route is not None)
            ):
                route = _configured_route(node, channel, key, policy)
            if route is not None:
                if route == "broadcast":
                    raise ConfigurationError(
                        "a request takes one reply, so it cannot be broadcast; use "
                        "ctx.gather(..., route='broadcast') or ctx.send(..., route='broadcast')"
                    )
                to, instance = registry.targets(channel, route, key)[0]
        elif route is not None:
            _registry(node, route)
        if node.guards is not None or policy is not None:
            calls = _policy_calls(node)
            reply = calls.request(
                self, channel, command, returns, timeout, key, subject, policy, to
            )
            if instance and registry is not None:
                _track(registry, instance, reply._future, node.clock.time())
            return reply
        deadline = self._deadline_for(timeout)
        message, future = self._asking(command, key, subject, deadline)
        if instance and registry is not None:
            _track(registry, instance, future, node.clock.time())
        send = PendingSend(to, message, future)
        node.sends.add(send)
        inline = node.inline.get(channel) if node.inline and not instance else None
        if inline is None:
            return Reply(node, to, message, returns, send, future, deadline)
        return Reply(node, channel, message, returns, send, future, deadline, (inline, command))

    def _asking(
        self, command: Payload, key: str | None, subject: str | None, deadline: float | None
    ) -> tuple[Message, asyncio.Future[list[Message]]]:
        """A request's message (replies to this process's inbox) and the future of its reply."""
        node = self._node
        message = node.envelope(
            command,
            source=self.service,
            cause=self.message,
            key=key,
            subject=subject,
            deadline=deadline,
            replyto=node.inbox,
        )
        return message, node.replies.expect(message.id, 1, deadline, node.clock.time())

    async def gather(
        self,
        channel: str,
        request: Payload,
        *,
        returns: type[R],
        timeout: float,
        count: int | None = None,
        key: str | None = None,
        route: str | None = None,
    ) -> list[R]:
        """Scatter-gather: publish ``request`` and collect replies until ``count`` or the deadline.

        Returns the replies that arrived (possibly none); failed responders are skipped.
        ``route="broadcast"`` asks every live instance of the service on its own
        channel (``count`` then defaults to how many there are).
        """
        node = self._node
        node.note_sent(self.service, channel)
        targets = None
        if route is not None:
            targets = [t for t, _ in _registry(node, route).targets(channel, route, key)]
            count = len(targets) if count is None else count
        message = node.envelope(
            request,
            source=self.service,
            cause=self.message,
            key=key,
            deadline=self._deadline_for(timeout),
            replyto=node.inbox,
        )
        future = node.replies.expect(message.id, count, message.deadline_ts(), node.clock.time())
        try:
            if targets is not None:
                for target in targets:
                    await node.transport.publish(target, message)
            elif node.send_chains is None:
                await node.transport.publish(channel, message)
            else:
                out = Outgoing(
                    channel=channel, message=message, kind="gather", service=self.service
                )
                await node.send(out)
            with contextlib.suppress(TimeoutError):
                async with timeout_at(node.clock, message.deadline_ts()):
                    await asyncio.shield(future)
        finally:
            arrived = node.replies.forget(message.id)
        if future.done() and not future.cancelled():
            arrived = future.result()
        return [
            payload
            for reply in arrived
            if isinstance(payload := _read(node, reply, returns), returns)
        ]
