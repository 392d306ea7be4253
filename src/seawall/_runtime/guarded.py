"""Calls under a call policy: the thin asyncio side of :mod:`seawall.resilience`.

Only calls to a target with a policy take this path (``ctx.request`` and
``ctx.send`` check one attribute otherwise). Before anything is published the
target's circuit breaker is asked (open: :class:`~seawall.CircuitOpen` at
once) and a slot of its bulkhead taken (full: wait for one within the
deadline, or :class:`~seawall.Overloaded` at once, as the policy says). A
request without a reply in time is sent again with the same message id, after
a backoff, while its deadline allows (the responder answers a repeat from its
reply cache). The outcome is told to the breaker once: a reply is a success, a
remote failure or no reply a failure, a declared domain error neither; a call
slower than the breaker's ``slow_call`` counts as failed. A request is admitted
when it is made and judged when its reply is awaited (:class:`GuardedReply`);
any other awaited call, such as ``ctx.send``'s publish, runs inside
:meth:`GuardedCall.run`, the same fast path around one ``await``.

A routed call (one instance picked, :mod:`seawall.discovery.routing`) is guarded
as a call to its target, the service: its policy, breaker and bulkhead are the
service's, only the publish goes to the instance's channel.

An error that comes out of a guarded call names its target (:func:`blamed`),
so that a consumer which declared the target a dependency holds the message
instead of spending its attempts (see the dispatcher).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import Awaitable, Callable, Generator
from typing import Any, Generic, TypeVar

import msgspec

from .._clock import Clock, timeout_at
from .._exceptions import (
    CircuitOpen,
    DeadlineExceeded,
    Overloaded,
    RemoteError,
    TransportError,
)
from .._messages.envelope import Message
from .._messages.payload import Payload
from ..resilience import RETRY_HEADER, CallPolicy, Guard, Guards, Policies
from .context import Context, Reply, _unwrap
from .middleware import Outgoing
from .node import Node
from .sends import PendingSend

__all__ = ["RETRY_HEADER", "GuardedCall", "GuardedCalls", "GuardedReply", "blame", "blamed"]

T = TypeVar("T")

_TARGET = "seawall_target"


def blame(exc: BaseException, target: str) -> None:
    """Mark ``exc`` as the failure of a call to ``target``."""
    with contextlib.suppress(AttributeError):
        setattr(exc, _TARGET, target)


def blamed(exc: BaseException) -> str | None:
    """The target whose guarded call failed with ``exc`` (or caused it), if any."""
    seen = 0
    error: BaseException | None = exc
    while error is not None and seen < 8:
        target = getattr(error, _TARGET, None)
        if isinstance(target, str):
            return target
        if isinstance(error, CircuitOpen):
            return error.target
        error = error.__cause__ or error.__context__
        seen += 1
    return None


def guards_of(node: Node) -> Guards:
    """The node's guards, made on first use (a per-call policy without system policies)."""
    guards = node.guards
    if guards is None:
        guards = node.guards = Guards(Policies())
    return guards


def _wake(guard: Guard, waiter: Any) -> None:
    """Hand a freed slot to ``waiter``, or past those that gave up meanwhile."""
    while waiter is not None and waiter.done():
        waiter = guard.pass_slot()
    if waiter is not None:
        waiter.set_result(None)


def _failure(error: BaseException | None, call: CallPolicy) -> bool | None:
    """Whether ``error`` is a failure of the target (None: it says nothing about it)."""
    if error is None:
        return False
    if isinstance(error, RemoteError):
        return error.error_type not in (call.domain_errors or ())
    if isinstance(error, DeadlineExceeded | TransportError):
        return True
    if isinstance(error, Exception) and not isinstance(error, CircuitOpen | Overloaded):
        return False  # the target answered, the caller could not use it (UnexpectedReply)
    return None


class GuardedCalls:
    """What ``ctx.request`` and ``ctx.send`` call when a policy applies (set on the node)."""

    __slots__ = ()

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
    ) -> Reply[Any]:
        """``ctx.request`` under the target's policy (and ``policy`` on top), published to
        ``to`` (``channel``, or the instance channel a route picked)."""
        node = ctx._node
        guards = node.guards or guards_of(node)
        try:
            guard = None if policy is not None else guards.by_target[channel]
        except KeyError:  # the target's first call
            guard = None
        if guard is not None and guard.ready and guard.free > 0:
            guard.free -= 1  # the guard's fast path: its breaker has nothing to say
            call, has_slot, started = guard.policy, True, 0.0
        else:
            guard, call = guards.guard(channel, policy)
            started = node.clock.time() if guard.timed else 0.0
            has_slot = guard.enter(node.clock.time, call)
        deadline = ctx._deadline_for(call.timeout if timeout is None else timeout)
        message, future = ctx._asking(command, key, subject, deadline)
        send = PendingSend(to, message, future)
        if has_slot:
            node.sends.add(send)
        return GuardedReply(node, to, message, returns, send, future, deadline, guard, call,
                            has_slot, started)  # fmt: skip

    async def send(
        self,
        ctx: Context,
        channel: str,
        message: Message,
        not_before: float | None,
        priority: int,
        policy: CallPolicy | None,
        to: str,
    ) -> None:
        """``ctx.send`` under the target's policy: breaker and bulkhead around the publish
        to ``to`` (``channel``, or the instance channel a route picked)."""
        node = ctx._node
        guard, call = guards_of(node).guard(channel, policy)
        out = Outgoing(
            channel=to,
            message=message,
            kind="send",
            service=ctx.service,
            not_before=not_before,
            priority=priority,
        )
        guarded = GuardedCall[None](guard, call, node.clock, _send_failed)
        await guarded.run(_publish(node, out), message.deadline_ts())


class GuardedReply(Reply[Any]):
    """A pending reply under a call policy: slot, retries and the breaker's verdict."""

    __slots__ = ("_call", "_guard", "_has_slot", "_reported", "_started")

    def __init__(
        self,
        node: Node,
        channel: str,
        request: Message,
        into: type[Payload] | None,
        send: PendingSend,
        future: asyncio.Future[list[Message]],
        deadline: float | None,
        guard: Guard,
        call: CallPolicy,
        has_slot: bool,
        started: float,
    ) -> None:
        super().__init__(node, channel, request, into, send, future, deadline)
        self._guard = guard
        self._call = call
        self._has_slot = has_slot
        self._started = started
        self._reported = False
        if deadline is not None and has_slot:
            # a reply nobody awaits must not hold its slot (or a half-open trial) for ever
            node.timers.call_at(deadline, self._abandoned)

    def __await__(self) -> Generator[Any, None, Any]:
        return self._guarded().__await__()

    async def _guarded(self) -> Any:
        node = self._node
        try:
            if not self._has_slot:
                await self._take_slot()
            with timeout_at(node.timers, self._deadline):  # cheaper than the clock's timers
                replies = await self._attempts()
            result = _unwrap(node, replies[0], self._into)
        except TimeoutError as exc:
            what = "answered" if self._send.taken else "sent"
            error = exc if isinstance(exc, DeadlineExceeded) else self._exceeded(what)
            if self._report(error):
                blame(error, self._guard.target)
            raise error from None
        except BaseException as exc:
            if self._report(exc):
                blame(exc, self._guard.target)
            raise
        finally:
            node.replies.forget(self._request.id)
        guard = self._guard
        if guard.quiet and self._has_slot and not self._reported:
            # the guard's fast path: a success changes nothing but its slot and a count
            self._reported, self._has_slot = True, False
            guard.quiet -= 1
            guard.free += 1
        else:
            self._report(None)
        return result

    async def _take_slot(self) -> None:
        """Wait for a bulkhead slot within the deadline, then queue the send."""
        node, guard = self._node, self._guard
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        guard.wait(waiter)
        try:
            async with timeout_at(node.clock, self._deadline):
                await waiter
        except BaseException:
            guard.withdraw(waiter)
            if waiter.done() and not waiter.cancelled():
                self._has_slot = True
                self._leave()  # handed a slot just as the wait ended
            elif self._guard.breaker is not None:
                self._guard.breaker.release()
            self._reported = True
            raise
        self._has_slot = True
        node.sends.add(self._send)

    async def _attempts(self) -> list[Message]:
        """Send, wait for the reply; without one in time, send again while retries last."""
        node, retry = self._node, self._call.retry
        attempts = 1 if retry is None else retry.attempts
        for attempt in range(1, attempts + 1):
            if attempt == 1:
                if not self._send.taken:
                    await node.sends.send_through(self._send)
            elif not await self._resend(attempt):
                continue
            if retry is None or attempt == attempts:
                return await self._future  # the last wait: nothing to keep the future for
            attempt_ends = node.clock.time() + retry.attempt_timeout
            with contextlib.suppress(TimeoutError), timeout_at(node.timers, attempt_ends):
                return await asyncio.shield(self._future)  # kept for the next attempt
            await node.clock.sleep(retry.backoff(attempt))
        raise AssertionError("unreachable: the last attempt returns or raises")

    async def _resend(self, attempt: int) -> bool:
        """Publish the request again, same id; False if the transport did not take it."""
        request = self._request
        again = msgspec.structs.replace(
            request, headers={**request.headers, RETRY_HEADER: str(attempt)}
        )
        try:
            await self._node.sends.publish(self._channel, again)
        except TransportError:
            return False
        return True

    def _report(self, error: BaseException | None) -> bool:
        """Tell the breaker the outcome (once) and free the slot; True: a failure of the target."""
        if self._reported:
            return False
        self._reported = True
        failed = _failure(error, self._call)
        guard = self._guard
        if self._has_slot:
            self._has_slot = False
            _wake(guard, guard.leave(self._node.clock.time, failed, self._started))
        elif guard.breaker is not None:  # pragma: no cover - a slot is held until reported
            guard.breaker.release()
        return bool(failed)

    def _abandoned(self) -> None:
        """The deadline passed and nobody awaited the reply: a failure, and the slot back."""
        if not self._reported:
            self._report(DeadlineExceeded("no reply awaited before the deadline"))

    def _leave(self) -> None:
        """Free the slot without a verdict (handed one just as the wait for it ended)."""
        if not self._has_slot:
            return
        self._has_slot = False
        _wake(self._guard, self._guard.pass_slot())


class GuardedCall(Generic[T]):
    """Calls to one target under its guard: the breaker asked, a bulkhead slot taken, the
    outcome told. ``ctx.send`` under a policy publishes through one; it is the guard's
    whole cost around any awaited call (``benchmarks.resilience`` measures it).

    ``judge`` says whether an exception of the call is a failure of the target (True),
    not one (False), or says nothing about it (None); a failure is blamed on the target.
    """

    __slots__ = ("_clock", "_guard", "_judge", "_policy")

    def __init__(
        self,
        guard: Guard,
        policy: CallPolicy,
        clock: Clock,
        judge: Callable[[BaseException], bool | None] | None = None,
    ) -> None:
        self._guard, self._policy, self._clock = guard, policy, clock
        self._judge = judge or _raised_fails

    async def run(self, call: Callable[[], Awaitable[T]], deadline: float | None = None) -> T:
        """Await ``call()`` under the guard; a full bulkhead that queues waits for a slot
        until ``deadline`` (epoch seconds; by default the policy's timeout from now)."""
        guard = self._guard
        if guard.ready and guard.free > 0:
            guard.free -= 1  # the fast path: the breaker has nothing to say
            started = 0.0
        else:
            started = await self._enter(deadline)
        try:
            result = await call()
        except BaseException as exc:
            failed = self._judge(exc)
            _wake(guard, guard.leave(self._clock.time, failed, started))
            if failed:
                blame(exc, guard.target)
            raise
        if guard.quiet:  # the fast path: a success changes nothing but a slot and a count
            guard.quiet -= 1
            guard.free += 1
        else:
            _wake(guard, guard.leave(self._clock.time, False, started))
        return result

    async def _enter(self, deadline: float | None) -> float:
        """Ask the breaker, take a slot (waiting for one if the policy says so); returns the
        start time the breaker judges slow calls by."""
        guard, clock, policy = self._guard, self._clock, self._policy
        started = clock.time() if guard.timed else 0.0
        if guard.enter(clock.time, policy):
            return started
        if deadline is None and policy.timeout is not None:
            deadline = clock.time() + policy.timeout
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        guard.wait(waiter)
        try:
            async with timeout_at(clock, deadline):
                await waiter
        except BaseException:
            guard.withdraw(waiter)
            if waiter.done() and not waiter.cancelled():
                _wake(guard, guard.pass_slot())  # handed a slot just as the wait ended
            if guard.breaker is not None:
                guard.breaker.release()  # admitted, but no call to judge
            raise
        return started


def _raised_fails(error: BaseException) -> bool | None:
    """By default any exception a call raises is a failure of its target; a cancellation
    says nothing about it."""
    return True if isinstance(error, Exception) else None


def _send_failed(error: BaseException) -> bool | None:
    """A publish the transport refused or did not finish in time is the target's (or its
    channel's) failure; anything else (cancelled, a middleware's error) none."""
    return True if isinstance(error, TransportError | TimeoutError) else None


def _publish(node: Node, out: Outgoing) -> Callable[[], Awaitable[None]]:
    """The guarded send's call: the transport's publish, or through the around-send chain."""
    if node.send_chains is not None:
        return functools.partial(node.send, out)
    return functools.partial(
        node.transport.publish,
        out.channel,
        out.message,
        not_before=out.not_before,
        priority=out.priority,
    )
