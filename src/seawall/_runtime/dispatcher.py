"""The dispatcher: runs one subscription of a service.

It reads deliveries from a transport subscription and hands them to a fixed
pool of ``concurrency`` workers. The subscription's prefetch bounds how many
deliveries are held at once (working, queued behind their key, or waiting
for a retry), so memory stays bounded whatever the backlog.

Order per partition key: deliveries that share a key form a *lane*; only the
head of a lane is ever being worked on. When the head fails and waits for a
retry, the lane waits with it, on a timer rather than a worker, so other keys
keep flowing (see :mod:`seawall._runtime.lanes`). Messages without a key are retried by the broker
(``nack(delay=…)``), which frees their in-flight slot meanwhile.

A message whose deadline passed is not handled; its requester gets a
``DeadlineExceeded`` failure, and the message goes to the dead-letter channel
(reason ``expired``) unless the service drops expired messages. Undecodable
messages, commands of a type no handler takes, and messages of a major version
no handler takes and no upcaster lifts go to the dead-letter channel at once;
after the retry policy gives up, so does a failing message (and its requester
gets the error). On subscriptions, event types nobody here handles are
acknowledged and skipped.

Each message is read in the major version its ``dataschema`` names, by the
handler of that major (see :mod:`seawall._runtime.service`). The decoder for a
(type, content type, schema) is cached, so the common path costs one dict
lookup; messages that need an upcaster take the full path every time.

The rules for a failed message (retry when, park it or hand it back, dead-letter
why) are the pure function :func:`seawall._runtime.failure.decide`; this module
carries its decisions out, once for every transport.

Around-handle middleware (:mod:`seawall._runtime.middleware`), when there is
any, wraps each handler call; a layer that asks about a failed attempt's fate
(:meth:`~seawall.Handling.outcome`) gets it decided then, and the dispatcher
later carries out that same decision.

Draining (:meth:`Dispatcher.stop`): intake stops at the transport first
(``stop_intake``, so that what goes back goes to the group, not to this
subscription again); then whatever has not started goes back to the broker,
due at once, a key's messages in order, each only once the one before it has
left: a parked head at once (its retry is not waited for; the broker's next
delivery counts as the next attempt), the messages behind a head still working
once it has finished or failed. Started work gets the grace period; what is
still unsettled after it comes again when the subscription closes.

Requests answered in the caller's task (:meth:`Dispatcher.claim` and
:meth:`Dispatcher.run_inline`): on a command channel of a service declared with
``requests="direct"`` over an in-process transport, a request made in this process
may skip the broker, the worker hop and the reply's trip back, and run its handler
in the requester's own task. The handling is this module's, step for step (reply
cache, decode, deadline, around-handle middleware, the reply, the failure rules,
the counters); only where the message comes from and where a retry goes differ. See
:meth:`Dispatcher.claim` for when it is taken and what it promises.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Protocol

import msgspec

from .._clock import Timer, timeout_at
from .._exceptions import DeadlineExceeded, MessageError, TransportError, UnknownMessageType
from .._messages.codec import raw_decoder
from .._messages.envelope import DLQ_HEADERS, Message
from .._messages.payload import Payload, schema_version
from .._messages.sharing import shareable
from .._messages.upcast import Upcaster, plan
from .._tasks import being_cancelled
from .._transport import Delivery
from .._transport import Subscription as TransportSubscription
from .context import Context
from .failure import Attempt, DeadLetter, Decision, Expire, Park, Redeliver, Stage, decide
from .gates import Gate, ReplyCache
from .lanes import Lanes
from .middleware import AroundHandle, Handling, NextHandle, Outcome, compose_handle
from .node import Node
from .replies import Done
from .service import Handler, Subscription

if TYPE_CHECKING:
    from .._transport.ownership import Fence

__all__ = ["DLQ_HEADERS", "Dispatcher", "FailureHook", "Stats", "dead_letter_channel"]

log = logging.getLogger("seawall.dispatcher")

FailureHook = Callable[[str, Message, BaseException, bool], None]
"""Called as (handler name, message, exception, final) on every handler failure."""


def dead_letter_channel(group: str) -> str:
    """Where a group's dead letters go."""
    return f"{group}.dlq"


@dataclass
class Stats:
    """Counters of one dispatcher, read by status displays and summaries."""

    handled: int = 0
    failed: int = 0
    retried: int = 0
    dead_lettered: int = 0
    expired: int = 0
    """Messages whose deadline passed before they were handled: dead-lettered as well
    (also counted in ``dead_lettered``), or only counted here (``expired="drop"``)."""
    skipped: int = 0
    held: int = 0
    """Messages held back (no attempt spent) while a declared dependency's breaker was open."""
    repeats: int = 0
    """Repeated requests answered from the reply cache, their handler not run again."""
    timings: deque[float] = field(default_factory=lambda: deque(maxlen=TIMINGS))
    """Seconds some recent handler calls took (one in :data:`SAMPLE_EVERY`, the newest
    :data:`TIMINGS`): the registry announces their p50 and p99."""


SAMPLE_EVERY = 8
"""One handled message in this many has its handler timed (cheap enough for every path)."""

TIMINGS = 256
"""Handler timings kept per dispatcher."""


_Schema = tuple[str, str, str | None]
"""A message's type, content type and dataschema: what decides how it is read."""

_CACHED_SCHEMAS = 1024
"""At most this many decoders are cached: the schema strings come from the senders."""


_VERBS = {"expired": "did not start"}
"""How the log says a message was dead-lettered before any handler ran, by reason."""


INLINE = -2
"""The partition a request answered in its caller's task is said to come from."""

YIELD_EVERY = 32
"""A caller whose requests are answered in its own task lets the event loop run once
every this many of them (see :meth:`Dispatcher.run_inline`)."""

TRIED_INLINE = "seawall-tried-inline"
"""Header of a request handed to the channel after attempts made in its caller's task
(see :meth:`Dispatcher.run_inline`): how many, so that the attempts the retry policy
counts are those of the request, wherever they ran."""


def _no_fence(partition: int) -> Fence | None:
    """No member owns partitions of this subscription: writes carry no fence."""
    return None


class _Item(msgspec.Struct, eq=False, gc=False):
    # A Struct, not a dataclass: one is made per delivery, and a Struct is built in C
    # without a Python __init__ frame. eq=False: items are compared and hashed by identity
    # (the timers are keyed by them); gc=False: an item refers to nothing that refers back.
    delivery: Delivery
    key: str | None
    retries: int = 0  # local retries on top of the broker's attempt count
    held: int = 0  # times held back on a dependency (no attempt spent)
    decision: Decision | None = None  # decided inside the middleware chain, carried out after
    done: bool = False  # finished (_finish): set for the items answered in the caller's task


class _Settles(Protocol):
    """What the failure path needs of a subscription: settling a delivery."""

    async def ack(self, delivery: Delivery) -> None: ...

    async def nack(self, delivery: Delivery, *, delay: float = 0.0) -> None: ...


class _Inline:
    """How a request answered in its caller's task is settled: nothing to acknowledge;
    handed back (a retry) it goes to the channel, the normal path, for its remaining
    attempts: due after the retry's delay, its attempts so far in :data:`TRIED_INLINE`."""

    __slots__ = ("_node",)

    def __init__(self, node: Node) -> None:
        self._node = node

    async def ack(self, delivery: Delivery) -> None:
        return None

    async def nack(self, delivery: Delivery, *, delay: float = 0.0) -> None:
        message = delivery.message
        tried = delivery.attempt + _tried_inline(message)
        again = msgspec.structs.replace(
            message, headers={**message.headers, TRIED_INLINE: str(tried)}
        )
        node = self._node
        not_before = node.clock.time() + delay if delay > 0 else None
        await node.transport.publish(delivery.channel, again, not_before=not_before)


def _tried_inline(message: Message) -> int:
    """Attempts a request had in its caller's task before it came through the channel."""
    headers = message.headers
    if not headers:
        return 0
    try:
        return int(headers.get(TRIED_INLINE, 0))
    except ValueError:
        return 0


class Dispatcher:
    """Consumes one (channel, group) of a service with ordering, retries and dead letters."""

    def __init__(
        self,
        node: Node,
        service: str,
        spec: Subscription,
        *,
        grace: float = 10.0,
        on_failure: FailureHook | None = None,
        around: Sequence[AroundHandle] = (),
    ) -> None:
        self.node = node
        self.service = service
        self.spec = spec
        self.grace = grace
        self.on_failure = on_failure
        self.stats = Stats()
        self.dlq = dead_letter_channel(spec.group)
        self._stopping = asyncio.Event()
        self._lanes: Lanes[_Item] = Lanes()
        self._timers: dict[_Item, Timer] = {}
        self._decoders: dict[
            _Schema, tuple[Handler, Callable[[bytes], Payload], type[Payload] | None]
        ] = {}
        """Handler, raw decoder and the class taken as the sender's object (None: decode)."""
        self._shared: dict[type, Handler] = {}
        """The handler of each class whose objects a handler takes as the sender made them
        (see :meth:`_resolve_fast`): a carried payload's class names its message's type
        and schema, so its class alone finds its handler."""
        self._inflight = 0
        self._fence_of: Callable[[int], Fence | None] = _no_fence
        self._ack_now: Callable[[Delivery], None] | None = None
        self._draining = False  # intake stopped: what has not started goes back, in order
        self._idle = asyncio.Event()
        self._idle.set()
        self.ready = asyncio.Event()
        """Set once the dispatcher has subscribed (again after every restart); cleared as soon
        as its link breaks, before the work in flight drains."""
        self.stopped = asyncio.Event()
        """Set once the dispatcher has drained after :meth:`stop`."""
        self._around: NextHandle | None = (
            compose_handle(around, self._innermost) if around else None
        )
        self._gate = Gate.of(node, spec)
        """Holds messages while a dependency's breaker is open; None without dependencies."""
        self._replies = ReplyCache.of(node, spec, service)
        """Replies given, by request id (command channels only)."""
        self._alone: Callable[[str, str], bool] | None = getattr(node.transport, "only_group", None)
        """Whether every live member of a channel is of a group (in-process transports)."""
        self._lent: dict[_Item, asyncio.Future[None]] = {}
        """Requests answered in their caller's task, each with the idle worker it holds."""
        self._inline_open = False
        """Whether :meth:`claim` may take requests: subscribed, not stopping, and none of
        what rules it out (a gate, partition leases, a durable reply store)."""
        self._settles_inline = _Inline(node)
        self._inline_calls = 0

    @property
    def name(self) -> str:
        return f"{self.service}:{self.spec.channel}/{self.spec.group}"

    @property
    def busy(self) -> bool:
        """Whether deliveries are being worked on or waiting for a retry."""
        return self._inflight > 0

    @property
    def in_flight(self) -> int:
        """Deliveries held: being handled, queued behind their key, or waiting for a retry."""
        return self._inflight

    def stop(self) -> None:
        """Ask :meth:`run` to drain and return."""
        self._inline_open = False
        self._stopping.set()

    async def run(self) -> None:
        """Subscribe and dispatch until stopped; a broken link raises after draining."""
        try:
            await self._run()
        finally:
            self._inline_open = False
            self.ready.clear()  # not subscribed until the supervisor runs it again
            if self._stopping.is_set():
                self.stopped.set()

    async def _run(self) -> None:
        if self._stopping.is_set():
            return
        transport = self.node.transport
        sub = await transport.subscribe(
            self.spec.channel,
            group=self.spec.group,
            prefetch=self.spec.prefetch,
            start=self.spec.start,
        )
        # a subscription whose members own partitions says under which lease each was read
        self._fence_of = getattr(sub, "fence", _no_fence)
        # one that can settle without a coroutine (the memory transport's) does so
        self._ack_now = getattr(sub, "ack_now", None)
        self.ready.set()
        replies = self._replies
        self._inline_open = (
            self._alone is not None
            and replies is not None
            and not replies.durable
            and self._gate is None
            and self._fence_of is _no_fence
            and not self._stopping.is_set()
        )
        broken: list[TransportError] = []
        try:
            async with asyncio.TaskGroup() as tasks:
                workers = [tasks.create_task(self._work(sub)) for _ in range(self.spec.concurrency)]
                reader = tasks.create_task(self._read(sub, broken))
                stopping = tasks.create_task(self._stopping.wait())
                await asyncio.wait({reader, stopping}, return_when=asyncio.FIRST_COMPLETED)
                stopping.cancel()
                await self._drain(sub, reader)
                for worker in workers:
                    worker.cancel()
        finally:
            self._reset()
            await sub.close()
        if broken:
            raise broken[0]

    async def _read(self, sub: TransportSubscription, broken: list[TransportError]) -> None:
        # A subscription that can push (the memory transport's) hands each delivery to
        # _accept in the task that made it ready: a worker is then one task hop away
        # from the publisher instead of two, and no reading task wakes per batch.
        # A service with dependencies reads in a loop instead: it must be able to stop
        # taking messages while a dependency's breaker is open (the gate).
        gate = self._gate
        push = getattr(sub, "push_to", None) if gate is None else None
        try:
            if push is not None:
                await push(self._accept)
                return
            accept = self._accept
            async for delivery in sub:
                accept(delivery)
                if gate is not None:
                    await gate.closed()  # take no more while a dependency is down
        except TransportError as exc:
            # Not subscribed from now on, not only once the work in flight has drained
            # (up to the grace period): health and presence must not count on this link.
            self.ready.clear()
            broken.append(exc)

    def _accept(self, delivery: Delivery) -> None:
        """A delivery arrived: it waits behind its key, or is ready for a worker."""
        if self._inflight == 0:
            self._idle.clear()
        self._inflight += 1
        key = delivery.message.partitionkey
        if key is None:
            self._lanes.requeue(_Item(delivery, None))
        else:
            self._lanes.add(_Item(delivery, key), key)

    def _finish(self, item: _Item) -> None:
        item.done = True
        if item.key is not None:
            self._lanes.done(item.key)
        self._inflight -= 1
        if self._inflight == 0:
            self._idle.set()

    async def _drain(self, sub: TransportSubscription, reader: asyncio.Task[None]) -> None:
        """Stop intake, return what has not started, then give started work the grace period.

        Intake stops at the transport first, so that what goes back goes to the
        group and not to this subscription again. A key's messages go back in
        order, each once the one before it has left: a parked head at once (its
        retry is not waited for), the ones behind a head still working once it
        has finished (see :meth:`_hand_back`).
        """
        await sub.stop_intake()
        reader.cancel()
        self._draining = True
        self._unpark()
        while (item := self._lanes.take()) is not None:
            await self._hand_back(sub, item)
        if self._inflight == 0:
            return
        self._idle.clear()  # (a request answered in its caller's task leaves it set)
        try:
            async with timeout_at(self.node.clock, self.node.clock.time() + self.grace):
                await self._idle.wait()
        except TimeoutError:
            log.warning(
                "%s: %d messages still in flight after the %.1f s grace period; they are "
                "returned to the broker and will be delivered again",
                self.name,
                self._inflight,
                self.grace,
            )

    def _unpark(self) -> None:
        """Cancel the parked retries: each head is ready again, to be handed back first."""
        parked = list(self._timers)
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        for item in parked:
            self._lanes.requeue(item)

    async def _hand_back(self, sub: _Settles, item: _Item) -> None:
        """Return an unstarted item to the broker, due now; the next of its key is ready."""
        try:
            await sub.nack(item.delivery)
        finally:
            self._finish(item)

    def _reset(self) -> None:
        self._draining = False
        if self._replies is not None:
            self._replies.reset()
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        self._lanes.clear()
        self._inflight = 0
        for item in self._lent:  # answered in their callers' tasks: still running
            if not item.done:
                self._inflight += 1
                if item.key is not None:
                    self._lanes.claim(item.key)
        if self._inflight == 0:
            self._idle.set()

    async def _work(self, sub: TransportSubscription) -> None:
        # The whole path of a message in this one loop on purpose: every message takes
        # it, and a coroutine split off it would cost a coroutine object per message.
        lanes = self._lanes
        while True:
            item = lanes.take() or await lanes.get()
            if self._draining:  # stopping: it has not started, so it goes back
                await self._hand_back(sub, item)
                continue
            delivery = item.delivery
            message = delivery.message
            deadline = None if message.deadline is None else message.deadline.timestamp()
            if deadline is not None and self.node.clock.time() >= deadline:
                await self._failed(sub, item, self._too_late(message), "deadline")
                continue
            if self._gate is not None and self._hold(item, None):
                continue
            replies = self._replies
            if (
                message.replyto is not None
                and replies is not None
                and not replies.fresh(message)
                and await replies.answered(message)
            ):
                self.stats.repeats += 1
                await self._settle(sub, item)
                continue
            carried = delivery.payload  # the sender's object, from an in-process transport
            handler = None if carried is None else self._shared.get(type(carried))
            if handler is not None:
                payload = carried
            else:
                try:
                    handler, payload = self._resolve_fast(message, carried)
                except MessageError as exc:  # no attempt can ever take it
                    await self._failed(sub, item, exc, "decode")
                    continue
            if handler is None:
                self.stats.skipped += 1
                await self._settle(sub, item)
                continue
            started = self.node.clock.time() if not self.stats.handled % SAMPLE_EVERY else None
            try:
                if deadline is None:  # most events: no timer to arm and cancel
                    if self._around is None and not handler.wants_context:
                        result = await handler.fn(payload)  # _call's plainest case, inline
                    else:
                        result = await self._call(handler, payload, message, deadline, item)
                else:
                    # The call is made inside the block: a deadline that has already passed
                    # raises on entry, before a coroutine exists that nobody would await.
                    with timeout_at(self.node.timers, deadline):
                        result = await self._call(handler, payload, message, deadline, item)
            except Exception as exc:
                await self._failed(sub, item, exc, "handler", handler)
                continue
            except asyncio.CancelledError as exc:
                if being_cancelled():
                    raise  # the worker is being stopped
                # A handler that lets a CancelledError out without being cancelled (it awaited
                # a future someone else cancelled) failed like any other; left to propagate it
                # would end this worker silently with the message still in flight.
                bug = RuntimeError(f"{handler.name} raised CancelledError without being cancelled")
                bug.__cause__ = exc
                await self._failed(sub, item, bug, "handler", handler)
                continue
            if started is not None:
                self.stats.timings.append(self.node.clock.time() - started)
            if message.replyto is not None:
                await self._reply(message, result)
            self.stats.handled += 1
            ack_now = self._ack_now
            try:  # settled inline: this is the path every message takes
                if ack_now is not None:
                    ack_now(delivery)
                else:
                    await sub.ack(delivery)
            finally:  # _finish, inline
                if item.key is not None:
                    lanes.done(item.key)
                self._inflight -= 1
                if self._inflight == 0:
                    self._idle.set()

    def tried(self, item: _Item) -> int:
        """Attempts at ``item``'s message so far, this one included: the broker's
        deliveries, the retries parked here and those made in its caller's task."""
        delivery = item.delivery
        return delivery.attempt + item.retries + _tried_inline(delivery.message)

    def claim(self, message: Message, carried: object) -> _Item | None:
        """Take a place for ``message``, a request made in this process, to be handled in
        its caller's task by :meth:`run_inline`; None: publish it as usual.

        Taken only when the normal path could start it at once, on this very member:
        the dispatcher is subscribed and not stopping, its channel is a command channel
        whose live members are all of this group (the transport is in-process and says
        so: no other group would have had a copy), it has no dependency gate, no
        partition leases, no durable reply store, nothing is ready and waiting for a
        worker, a worker is idle (it is taken out of the pool until the call ends: the
        ``concurrency`` limit holds for both together), and the request's key, if it
        has one, has nothing out nor waiting (its lane is taken: the key's later
        messages wait behind it). The call counts as in flight (:attr:`in_flight`,
        :attr:`busy`), so a drain waits for it as for a worker's message.

        ``carried``: the payload object the request was made with, handed to a handler
        of its very class when that class is immutable all the way down, as an
        in-process transport does.
        """
        if not self._inline_open:
            return None
        spec = self.spec
        alone = self._alone
        assert alone is not None
        if not alone(spec.channel, spec.group):
            return None
        lanes = self._lanes
        key = message.partitionkey
        if key is not None and not lanes.claim(key):
            return None
        waiter = lanes.borrow()
        if waiter is None:
            if key is not None:
                lanes.done(key)
            return None
        item = _Item(Delivery(message, spec.channel, INLINE, 1, None, carried), key)
        self._lent[item] = waiter
        self._inflight += 1  # (_idle is not cleared: a drain clears it before it waits)
        return item

    async def run_inline(self, item: _Item) -> None:
        """Handle a request :meth:`claim` took, in the caller's task, as a worker would.

        The reply (or the failure) goes to the requester's waiting entry in the
        node's reply table, as from a worker. A repeat of a request id already
        answered is answered from the reply cache, the handler not run again. A
        failed attempt is decided by the same rules: dead-lettered (and the
        requester told) when no attempt is left or the deadline passed; else, where
        a worker would retry, it goes to the channel after the retry's delay, and
        the members of the group (this one too) make the remaining attempts, counted
        on from this one. Cancelling the caller cancels the handler, as any
        in-process call; the request then counts as not answered (a repeat may run
        it again). Its place is given back in every case.
        """
        message = item.delivery.message
        try:
            await self._inline(item, message)
        except asyncio.CancelledError:
            if self._replies is not None:
                self._replies.failed(message)
            raise
        finally:
            if not item.done:
                self._finish(item)
            waiter = self._lent.pop(item)
            self._lanes.lend_back(waiter)
        self._inline_calls += 1
        if not self._inline_calls % YIELD_EVERY:
            # A handler that never waits makes the whole request a plain call: a caller
            # asking in a loop would keep the event loop from every other task (timers,
            # heartbeats, the workers). Once in a while the caller lets them run.
            await asyncio.sleep(0)

    async def _inline(self, item: _Item, message: Message) -> None:
        # _work's path for one message, with _Inline to settle it
        replies = self._replies
        assert replies is not None
        sub = self._settles_inline
        deadline = None if message.deadline is None else message.deadline.timestamp()
        # (its requester has just checked the deadline, in this very task: no clock read)
        if not replies.fresh(message) and await replies.answered(message):
            self.stats.repeats += 1
            self._finish(item)
            return
        try:
            handler, payload = self._resolve_fast(message, item.delivery.payload)
        except MessageError as exc:
            await self._failed(sub, item, exc, "decode")
            return
        if handler is None:  # not on a command channel; as _work does
            self.stats.skipped += 1
            self._finish(item)
            return
        started = self.node.clock.time() if not self.stats.handled % SAMPLE_EVERY else None
        try:
            with timeout_at(self.node.timers, deadline):
                result = await self._call(handler, payload, message, deadline, item)
        except Exception as exc:
            await self._failed(sub, item, exc, "handler", handler)
            return
        except asyncio.CancelledError as exc:
            if being_cancelled():
                raise  # the caller is being cancelled: so is its handler
            bug = RuntimeError(f"{handler.name} raised CancelledError without being cancelled")
            bug.__cause__ = exc
            await self._failed(sub, item, bug, "handler", handler)
            return
        if started is not None:
            self.stats.timings.append(self.node.clock.time() - started)
        await self._reply(message, result)
        self.stats.handled += 1
        item.done = True  # _finish, inline
        if item.key is not None:
            self._lanes.done(item.key)
        self._inflight -= 1
        if self._inflight == 0:
            self._idle.set()

    def _call(
        self,
        handler: Handler,
        payload: Payload | None,
        message: Message,
        deadline: float | None,
        item: _Item,
    ) -> Awaitable[object]:
        if self._around is not None:
            return self._around(Handling(self, handler, item, payload, deadline))
        if handler.wants_context:
            fence = self._fence_of(item.delivery.partition)
            return handler.fn(payload, Context(self.node, self.service, message, deadline, fence))
        return handler.fn(payload)

    def _innermost(self, call: Handling) -> Awaitable[object]:
        """The end of the middleware chain: the handler."""
        handler: Handler = call._target
        if handler.wants_context:
            return handler.fn(call.payload, call.context)
        return handler.fn(call.payload)

    def context_of(self, call: Handling) -> Context:
        """The context a handler gets, for a :class:`Handling` that is asked for it."""
        fence = self._fence_of(call._item.delivery.partition)
        return Context(self.node, self.service, call.message, call.deadline, fence)

    def outcome_of(self, item: _Item, error: Exception) -> Outcome:
        """Decide now what becomes of ``item`` after ``error`` (for the middleware), and keep it."""
        return _outcome(self._decide(item, self._attempt(item, error, "handler")), self.dlq)

    def _decide(self, item: _Item, attempt: Attempt) -> Decision:
        """What becomes of ``item`` after a failed ``attempt``: decided once, so the middleware
        that asked first and the dispatcher that carries it out see the same decision."""
        if item.decision is None:
            broker_delays = self.node.transport.capabilities.delayed_redelivery
            item.decision = decide(
                attempt, self.spec.retry, broker_delays=broker_delays, expired=self.spec.expired
            )
        return item.decision

    def _resolve_fast(
        self, message: Message, carried: object = None
    ) -> tuple[Handler | None, Payload | None]:
        """:meth:`_route` and the decode, with the handler and raw decoder of each schema cached.

        ``carried``, the sender's payload object an in-process transport kept with the
        message, is taken as it is when it is of the very class the handler reads and that
        class is immutable all the way down (:func:`shareable`); else the body is decoded,
        a copy. A body that does not decode goes the full way, which says what is wrong.
        """
        key = (message.type, message.datacontenttype, message.dataschema)
        cached = self._decoders.get(key)
        if cached is not None:
            if carried is not None and type(carried) is cached[2]:
                return cached[0], carried
            try:
                return cached[0], cached[1](message.data)
            except (msgspec.DecodeError, msgspec.ValidationError):
                pass
        route = self._route(message)
        if route is None:
            return None, None
        handler, cls, steps = route
        if cached is None and not steps and len(self._decoders) < _CACHED_SCHEMAS:
            raw = raw_decoder(message.datacontenttype, cls)
            if raw is not None:
                self._decoders[key] = (handler, raw, cls if shareable(cls) else None)
        if not steps and carried is not None and type(carried) is cls and shareable(cls):
            if len(self._shared) < _CACHED_SCHEMAS:
                self._shared[cls] = handler
            return handler, carried
        return handler, self.node.read(message, cls, steps)

    def _route(
        self, message: Message
    ) -> tuple[Handler, type[Payload], tuple[Upcaster, ...]] | None:
        """The handler, class and upcasters for ``message``; None: nobody here wants it."""
        classes = self.spec.versions.get(message.type)
        if classes is None:
            if not self.spec.is_command_channel:
                return None
            raise UnknownMessageType(
                f"no handler for {message.type!r} on command channel {self.spec.channel!r}; "
                f"{self.service} handles {sorted(self.spec.versions)}"
            )
        version = schema_version(message.dataschema)
        cls, steps = plan(message.type, version, classes, self.node.upcasters, reader=self.name)
        return self.spec.handlers[cls], cls, steps

    async def _reply(self, request: Message, result: object) -> None:
        if result is None:
            if not self.spec.is_command_channel:
                return
            result = Done()
        if not isinstance(result, Payload):
            error = TypeError(
                f"{self.name}: the handler of {request.type} returned a {type(result).__name__}; "
                "return a Command, Event or Document (or None) for the requester"
            )
            log.error("%s", error)
            if self._replies is not None:
                self._replies.failed(request)
            await self.node.reply_failure(request, error, service=self.service)
            return
        node = self.node
        if request.replyto == node.inbox:  # the requester is in this process
            sent: Message | None = node.reply_here(request, result, source=self.service)
        else:
            sent = await node.reply(request, result, source=self.service)
        replies = self._replies
        if replies is not None and sent is not None:
            if replies.durable:
                await replies.keep(request, sent)
            else:
                replies.remember(request, sent)  # no coroutine when only memory keeps it

    async def _failed(
        self,
        sub: _Settles,
        item: _Item,
        error: Exception,
        stage: Stage,
        handler: Handler | None = None,
    ) -> None:
        """Carry out what :func:`~seawall._runtime.failure.decide` says about a failed attempt."""
        if self._replies is not None:
            self._replies.failed(item.delivery.message)
        if self._gate is not None and stage == "handler" and self._hold(item, error):
            item.decision = None
            self.stats.failed += 1
            if self.on_failure is not None and handler is not None:
                self.on_failure(handler.name, item.delivery.message, error, False)
            return
        attempt = self._attempt(item, error, stage)
        decision, item.decision = self._decide(item, attempt), None
        if isinstance(decision, Expire) or (
            isinstance(decision, DeadLetter) and decision.reason == "expired"
        ):
            await self._expire(sub, item, decision, handler)
            return
        if handler is not None:
            self.stats.failed += 1
            if self.on_failure is not None:
                final = isinstance(decision, DeadLetter)
                self.on_failure(handler.name, item.delivery.message, error, final)
        if isinstance(decision, DeadLetter):
            await self._give_up(sub, item, decision, error, handler)
        else:
            await self._retry(sub, item, decision, attempt, handler)

    def _attempt(self, item: _Item, error: Exception, stage: Stage) -> Attempt:
        message = item.delivery.message
        return Attempt(
            error=error,
            stage=stage,
            number=self.tried(item),
            key=item.key,
            now=self.node.clock.time(),
            deadline=message.deadline_ts(),
        )

    async def _retry(
        self,
        sub: _Settles,
        item: _Item,
        decision: Redeliver | Park,
        attempt: Attempt,
        handler: Handler | None,
    ) -> None:
        self.stats.retried += 1
        handing_back = self._draining and isinstance(decision, Park)
        log.info(
            "%s failed attempt %d of %s (%s: %s); %s %.3f s",
            handler.name if handler else self.name,
            attempt.number,
            item.delivery.message.id,
            type(attempt.error).__name__,
            attempt.error,
            "stopping: back to the broker now, not in" if handing_back else "retrying in",
            decision.delay,
            extra=self._log_fields(item, attempt.number, handler),
        )
        if isinstance(decision, Redeliver) or item.delivery.partition == INLINE:
            # (an item answered in its caller's task is not parked here: see run_inline)
            await sub.nack(item.delivery, delay=decision.delay)
            self._finish(item)
        elif handing_back:  # no retry waits here any more: back, before its key's next
            await self._hand_back(sub, item)
        else:  # parked: the item stays its lane's head, so the key's later messages wait
            item.retries += 1
            self._timers[item] = self.node.clock.call_at(
                self.node.clock.time() + decision.delay, lambda: self._retry_now(item)
            )

    def _hold(self, item: _Item, error: Exception | None) -> bool:
        """Hold ``item`` (no attempt spent) while a dependency it failed on, or any, is down."""
        assert self._gate is not None
        wait = self._gate.hold_for(error, item.held)
        if wait is None or self._draining:
            return False
        item.held += 1
        self.stats.held += 1
        if error is not None:
            log.info(
                "%s: %s (%s) held %.3f s, no attempt spent: its handler failed on dependency "
                "%r (%s)",
                self.name,
                item.delivery.message.type,
                item.delivery.message.id,
                wait,
                self._gate.target_of(error),
                error,
            )
        self._timers[item] = self.node.clock.call_at(
            self.node.clock.time() + wait, lambda: self._retry_now(item)
        )
        return True

    def _retry_now(self, item: _Item) -> None:
        if self._timers.pop(item, None) is not None:
            self._lanes.requeue(item)

    def _too_late(self, message: Message, handler: Handler | None = None) -> DeadlineExceeded:
        what = f"{message.type} ({message.id})"
        if handler is None:
            return DeadlineExceeded(f"{what} reached {self.service} after its deadline")
        return DeadlineExceeded(f"{handler.name} did not finish {what} by its deadline")

    async def _expire(
        self, sub: _Settles, item: _Item, decision: Decision, handler: Handler | None
    ) -> None:
        """Dead-letter an expired message, or drop it if the service says so; tell its requester."""
        message = item.delivery.message
        self.stats.expired += 1
        error = self._too_late(message, handler)
        if isinstance(decision, DeadLetter):
            await self._give_up(sub, item, decision, error, handler)
            return
        log.warning(
            "%s: %s (%s) not handled: its deadline passed; dropped (expired='drop')",
            self.name,
            message.type,
            message.id,
        )
        await self.node.reply_failure(message, error, service=self.service)
        await self._settle(sub, item)

    async def _give_up(
        self,
        sub: _Settles,
        item: _Item,
        decision: DeadLetter,
        error: BaseException,
        handler: Handler | None,
    ) -> None:
        delivery = item.delivery
        message = delivery.message
        attempt = self.tried(item)
        await self.node.reply_failure(message, error, service=self.service)
        headers = self._dlq_headers(delivery, decision.reason, error, attempt)
        dead = msgspec.structs.replace(message, headers={**message.headers, **headers})
        try:
            await self.node.transport.publish(self.dlq, dead)
        except TransportError as exc:
            log.error(
                "%s: could not dead-letter %s to %s (%s); returned it for redelivery",
                self.name,
                message.id,
                self.dlq,
                exc,
            )
            await sub.nack(delivery, delay=self.spec.retry.max_backoff)
            self._finish(item)
            return
        self.stats.dead_lettered += 1
        log.warning(
            "%s %s %s (%s) after %d attempt(s), %s: %s: %s; sent to %s",
            handler.name if handler else self.name,
            "gave up on" if handler else _VERBS.get(decision.reason, "rejected"),
            message.type,
            message.id,
            attempt,
            decision.why,
            decision.reason,
            error,
            self.dlq,
            extra=self._log_fields(item, attempt, handler),
        )
        await self._settle(sub, item)

    def _log_fields(self, item: _Item, attempt: int, handler: Handler | None) -> dict[str, object]:
        """The structured fields of a log line about ``item`` (for ``--log-format json``)."""
        message = item.delivery.message
        return {
            "message_id": message.id,
            "message_type": message.type,
            "channel": item.delivery.channel,
            "group": self.spec.group,
            "attempt": attempt,
            "service": self.service,
            "handler": None if handler is None else handler.name,
            "traceparent": message.traceparent,
        }

    def _dlq_headers(
        self, delivery: Delivery, reason: str, error: BaseException, attempt: int
    ) -> dict[str, str]:
        text = f"{type(error).__name__}: {error}"[:2000]
        now = datetime.fromtimestamp(self.node.clock.time(), UTC)
        values = (reason, text, str(attempt), delivery.channel, self.spec.group, now.isoformat())
        return dict(zip(DLQ_HEADERS, values, strict=True))

    async def _settle(self, sub: _Settles, item: _Item) -> None:
        try:
            await sub.ack(item.delivery)
        finally:
            self._finish(item)


def _outcome(decision: Decision, dlq: str) -> Outcome:
    """The public view of a decision, for the middleware."""
    if isinstance(decision, DeadLetter):
        return Outcome("dead-letter", reason=decision.reason, why=decision.why, channel=dlq)
    if isinstance(decision, Expire):
        return Outcome("expire", why="its deadline passed")
    return Outcome("retry", delay=decision.delay)
