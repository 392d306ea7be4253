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
slower than the breaker's ``slow_call`` counts as failed.

An error that comes out of a guarded call names its target (:func:`blamed`),
so that a consumer which declared the target a dependency holds the message
instead of spending its attempts (see the dispatcher).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Generator
from typing import Any

import msgspec

from .._clock import timeout_at
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

__all__ = ["RETRY_HEADER", "GuardedCalls", "GuardedReply", "blame", "blamed"]

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
    ) -> Reply[Any]:
        """``ctx.request`` under the target's policy (and ``policy`` on top)."""
        node = ctx._node
        guards = node.guards or guards_of(node)
        try:
            guard = None if policy is not None else guards.by_target[channel]
        except KeyError:  # the target's first call
            guard = None
        if guard is not None and guard.ready and guard.bulkhead.free > 0:
            guard.bulkhead.free -= 1  # the guard's fast path: its breaker has nothing to say
            call, has_slot, started = guard.policy, True, 0.0
        else:
            guard, call = guards.guard(channel, policy)
            started = node.clock.time() if guard.timed else 0.0
            has_slot = guard.enter(node.clock.time, call)
        deadline = ctx._deadline_for(call.timeout if timeout is None else timeout)
        message = node.envelope(
            command,
            source=ctx.service,
            cause=ctx.message,
            key=key,
            subject=subject,
            deadline=deadline,
            replyto=node.inbox,
        )
        future = node.replies.expect(message.id, 1, deadline, node.clock.time())
        send = PendingSend(channel, message, future)
        if has_slot:
            node.sends.add(send)
        return GuardedReply(node, channel, message, returns, send, future, deadline, guard, call,
                            has_slot, started)  # fmt: skip

    async def send(
        self,
        ctx: Context,
        channel: str,
        message: Message,
        not_before: float | None,
        priority: int,
        policy: CallPolicy | None,
    ) -> None:
        """``ctx.send`` under the target's policy: breaker and bulkhead around the publish."""
        node = ctx._node
        guard, call = guards_of(node).guard(channel, policy)
        out = Outgoing(
            channel=channel,
            message=message,
            kind="send",
            service=ctx.service,
            not_before=not_before,
            priority=priority,
        )
        await GuardedSend(node, guard, call).run(out)


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
                blame(error, self._channel)
            raise error from None
        except BaseException as exc:
            if self._report(exc):
                blame(exc, self._channel)
            raise
        finally:
            node.replies.forget(self._request.id)
        guard = self._guard
        if guard.quiet and self._has_slot and not self._reported:
            # the guard's fast path: a success changes nothing but its slot and a count
            self._reported, self._has_slot = True, False
            guard.quiet -= 1
            guard.bulkhead.free += 1
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


class GuardedSend:
    """One guarded one-way send; the publish is the call the breaker judges."""

    __slots__ = ("_call", "_guard", "_node")

    def __init__(self, node: Node, guard: Guard, call: CallPolicy) -> None:
        self._node, self._guard, self._call = node, guard, call

    async def run(self, out: Outgoing) -> None:
        node, guard, channel, message = self._node, self._guard, out.channel, out.message
        started = node.clock.time() if guard.timed else 0.0
        if not guard.enter(node.clock.time, self._call):
            try:
                await _wait_for_slot(node, guard, self._call, message)
            except BaseException:
                if guard.breaker is not None:
                    guard.breaker.release()
                raise
        error: BaseException | None = None
        try:
            if node.send_chains is None:
                await node.transport.publish(
                    channel, message, not_before=out.not_before, priority=out.priority
                )
            else:
                await node.send(out)
        except BaseException as exc:
            error = exc
            raise
        finally:
            # a publish the transport refused or did not finish in time is the target's
            # (or its channel's) failure; anything else (cancelled, a middleware's error) none
            failed = None if error is not None else False
            if isinstance(error, TransportError | TimeoutError):
                failed = True
            _wake(guard, guard.leave(node.clock.time, failed, started))
            if failed and error is not None:
                blame(error, channel)


async def _wait_for_slot(node: Node, guard: Guard, call: CallPolicy, message: Message) -> None:
    waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    guard.wait(waiter)
    deadline = message.deadline_ts()
    if deadline is None and call.timeout is not None:
        deadline = node.clock.time() + call.timeout
    try:
        async with timeout_at(node.clock, deadline):
            await waiter
    except BaseException:
        guard.withdraw(waiter)
        if waiter.done() and not waiter.cancelled():
            _wake(guard, guard.pass_slot())  # handed a slot just as the wait ended
        raise
