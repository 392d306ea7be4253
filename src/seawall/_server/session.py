"""One client connection on the broker server: frames in, transport calls, frames out.

A :class:`Session` speaks the protocol of :mod:`seawall._wire.protocol` for one
client over a :class:`~seawall._wire.streams.FramedStream`, on behalf of the
:class:`~seawall._server.server.BrokerServer` that accepted it:

* The connection is opened by :func:`~seawall._server.handshake.handshake` (TLS,
  Hello within the Hello timeout, token, admission, Welcome); every later request
  is checked against the connection's :class:`~seawall._server.rights.Rights`.
* Requests (Declare, Publish, Subscribe, Unsubscribe, Delete) go to a pool of
  :class:`~seawall._server.workers.Workers`, so a publish waiting for a full
  channel or for its disk commit holds up neither the other requests nor
  acks, while a publish that completes at once costs no task of its own.
  Each request is answered as soon as its transport call returned.
* Each subscription has a pump task moving deliveries from the transport's
  subscription to the client while the client's credit lasts; each delivery
  tells the rights that the connection may reply to the inbox it names.
* Ack, Acks, Nack and Credit are handled in the reading task itself, in order;
  the embedded broker's settlements need no coroutine (``ack_taken``/``nack_taken``).
* Batches: the publishes of one socket read reach the store writer together (the
  transport's ``hold_writes``), and a client whose Hello says ``batched`` gets the
  Oks of one write as one Oks frame.

Every task of a session lives in its TaskGroup; when the connection ends,
for whatever reason, the session's subscriptions are closed, so their
unsettled deliveries come again.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import logging
import ssl
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

from .._broker.log import Taken
from .._clock import timeout_at
from .._exceptions import ConnectionLost, MessageTooLarge, ProtocolError
from .._messages.envelope import Message, decode_message, encode_message
from .._transport import Subscription
from .._wire.protocol import (
    Ack,
    Acks,
    Credit,
    Declare,
    Delete,
    Deliver,
    Error,
    Frame,
    Goodbye,
    Nack,
    Ok,
    Oks,
    Publish,
    Request,
    Subscribe,
    Unsubscribe,
)
from .._wire.streams import FramedStream
from .handshake import Refused, handshake
from .rights import Rights
from .served import PublishCalling, Served
from .workers import Workers

__all__ = ["Session"]

log = logging.getLogger("seawall.server")

WORKERS = 1024
"""Requests of one client handled at once; more wait in the backlog. A durable
publish holds its worker until its group commit, so this also bounds how many
publishes of one client can share a commit (64 held the embedded-backed server
to 17k msgs/s, 1024 gives 22k on the wire benchmark)."""
BACKLOG = 4096
"""Requests of one client waiting for a worker before the server stops reading."""
MAX_SUBSCRIPTIONS = 1024
"""Open subscriptions per connection (each has a pump task and up to prefetch deliveries)."""


class _Subscription:
    """A client's subscription: the transport's, plus credit and the deliveries out."""

    __slots__ = (
        "ack_now",
        "channel",
        "credit",
        "has_credit",
        "id",
        "nack_now",
        "prefetch",
        "pump",
        "sub",
        "unsettled",
    )

    def __init__(self, id: int, channel: str, sub: Subscription, prefetch: int) -> None:
        self.id = id
        self.channel = channel
        self.sub = sub
        self.prefetch = prefetch
        self.credit = prefetch
        self.has_credit = asyncio.Event()
        # by the handle sent as Deliver.offset: a Delivery, or what the embedded broker's
        # takes() gave (with ack_now and nack_now to settle it)
        self.unsettled: dict[int, Any] = {}
        self.pump: asyncio.Task[None] | None = None
        self.ack_now: Callable[[Any], None] | None = getattr(sub, "ack_taken", None)
        self.nack_now: Callable[[Any, float], None] | None = getattr(sub, "nack_taken", None)


class _Ended(Exception):
    """The connection is over; ``last`` is the frame to leave with, if any."""

    def __init__(self, last: Frame | None) -> None:
        self.last = last


class Session:
    """Serves one connected client until it leaves, fails, falls silent or the server stops."""

    def __init__(
        self,
        broker: Served,
        stream: FramedStream,
        peer: str,
        *,
        tls: ssl.SSLContext | None = None,
        accepted: float,
    ) -> None:
        self.broker = broker
        self.stream = stream
        self.name = peer
        """Who this is, for logs: the peer address, then the client's name too."""
        self.tls = tls
        self.accepted = accepted
        """When the connection was accepted: the Hello timeout counts from here."""
        self.rights = Rights(None, broker.owners, broker.clock)
        self._subs: dict[int, _Subscription] = {}
        self._ids = itertools.count(1)
        self._handles = itertools.count()
        self._stopping = asyncio.Event()
        self._farewell: Frame = Goodbye("the broker server is shutting down")
        self._tasks: set[asyncio.Task[Any]] = set()
        self._group: asyncio.TaskGroup | None = None
        self._slow_publishes = 0
        """Publishes handed to the workers and not answered yet: while there are any, later
        ones follow them there, so a client's publishes are stored in the order sent."""
        self._oks: list[int] | None = None
        """Requests answered Ok (no result) since the last write, sent as one Oks frame as
        that write leaves; None for a client that reads no Oks (single Ok frames)."""

    def stop(self) -> None:
        """Ask the session to finish its requests, say Goodbye and close."""
        self._stopping.set()
        if self._group is None:  # still opening: nothing to finish, drop the connection
            self.stream.abort()

    async def run(self) -> None:
        """Serve the connection to its end; never raises."""
        last: Frame | None = None
        opened = None
        try:
            opened = await handshake(self.broker, self.stream, self.name, self.tls, self.accepted)
            self.name = opened.name
            self.rights = Rights(opened.client, self.broker.owners, self.broker.clock)
            if opened.batched:
                self._oks = []
                self.stream.before_write = self._send_oks
            await self._serve(self.stream.batches())
        except (_Ended, Refused) as ended:
            last = ended.last
        except Exception:
            log.exception("broker server: the session of %s failed; closing it", self.name)
            last = Error(None, "internal", "the broker failed serving this connection; reconnect")
        finally:
            await self._close_subscriptions()
            if opened is not None and opened.client is not None:
                self.broker.leave(opened.client)
            await self.stream.close(last)
            self.stream.before_write = None  # it refers back to the session: no cycle

    # -- serving ------------------------------------------------------------------
    async def _serve(self, batches: AsyncIterator[list[Frame]]) -> None:
        # The pool is no attribute: it refers back to the session, and a cycle would keep
        # the connection's buffers until the garbage collector's next full pass.
        requests = Workers(self._answer, self._spawn, limit=WORKERS, backlog=BACKLOG)
        async with asyncio.TaskGroup() as group:
            self._group = group
            self._spawn(self.stream.write_loop())
            reading = self._spawn(self._read(batches, requests))
            silent = self._spawn(self.stream.keep_alive())
            stopping = self._spawn(self._stopping.wait())
            await asyncio.wait({reading, silent, stopping}, return_when=asyncio.FIRST_COMPLETED)
            last = await self._ending(reading, silent, requests)
            for task in self._tasks:
                task.cancel()
        raise _Ended(last)

    async def _ending(
        self,
        reading: asyncio.Task[Frame | None],
        silent: asyncio.Task[None],
        requests: Workers[Request],
    ) -> Frame | None:
        """Why the connection ends, and the last frame to send."""
        if reading.done():
            return reading.result()
        reading.cancel()
        if silent.done():
            log.info(
                "broker server dropped %s: silent for %.1f s; its unsettled deliveries come again",
                self.name,
                self.stream.heartbeat.misses * self.stream.heartbeat.interval,
            )
            return None
        await self._finish(requests)
        return self._farewell

    async def _finish(self, requests: Workers[Request]) -> None:
        """Let requests already read complete (bounded), so their answers go out."""
        clock = self.broker.clock
        try:
            async with timeout_at(clock, clock.time() + self.broker.config.heartbeat):
                await requests.quiet()
        except TimeoutError:
            log.warning("broker server: %s still had requests running at shutdown", self.name)

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        """A task of this session: cancelled when it ends."""
        assert self._group is not None
        task = self._group.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _read(
        self, batches: AsyncIterator[list[Frame]], requests: Workers[Request]
    ) -> Frame | None:
        """Handle incoming frames until the client leaves; the last frame to send it."""
        try:
            async for batch in batches:
                if await self._handle_all(batch, requests):
                    return None
                await requests.room()
        except ProtocolError as exc:
            log.warning("broker server: closing %s: %s", self.name, exc)
            return Error.of(None, exc)
        except OSError as exc:
            log.info("broker server: lost %s: %s", self.name, exc)
        return None

    async def _handle_all(self, frames: list[Frame], requests: Workers[Request]) -> bool:
        """Handle ``frames`` in order, requests to ``requests``; whether the client said Goodbye."""
        hold = self.broker.hold_writes
        release = None if hold is None else hold()
        try:
            return await self._handle_frames(frames, requests)
        finally:
            if release is not None:
                release()

    async def _handle_frames(self, frames: list[Frame], requests: Workers[Request]) -> bool:
        publish_calling = self.broker.publish_calling
        for frame in frames:
            if isinstance(frame, Publish):
                if (
                    publish_calling is None
                    or self._slow_publishes
                    or frame.not_before is not None
                    or not self._publish_now(frame, publish_calling)
                ):
                    self._slow_publishes += 1
                    requests.put(frame)
            elif isinstance(frame, Acks):
                await self._acks(frame)
            elif isinstance(frame, _REQUESTS):
                requests.put(frame)
            elif isinstance(frame, Ack):
                await self._ack(frame)
            elif isinstance(frame, Credit):
                self._credit(frame)
            elif isinstance(frame, Nack):
                await self._nack(frame)
            elif isinstance(frame, Goodbye):
                return True
            elif not self.stream.answer_ping(frame):
                raise ProtocolError(
                    "bad-request",
                    f"a client may not send {type(frame).__name__} frames after Hello",
                )
        return False

    # -- flow frames --------------------------------------------------------------
    async def _ack(self, frame: Ack) -> None:
        state = self._subs.get(frame.subscription)
        if state is not None and (delivery := state.unsettled.pop(frame.offset, None)):
            if state.ack_now is not None:
                state.ack_now(delivery)
            else:
                await state.sub.ack(delivery)

    async def _acks(self, frame: Acks) -> None:
        state = self._subs.get(frame.subscription)
        if state is None:
            return
        pop, ack = state.unsettled.pop, state.ack_now
        for offset in frame.offsets:
            delivery = pop(offset, None)
            if delivery is None:
                continue
            if ack is not None:
                ack(delivery)
            else:
                await state.sub.ack(delivery)

    async def _nack(self, frame: Nack) -> None:
        state = self._subs.get(frame.subscription)
        if state is not None and (delivery := state.unsettled.pop(frame.offset, None)):
            if state.nack_now is not None:
                state.nack_now(delivery, frame.delay)
            else:
                await state.sub.nack(delivery, delay=frame.delay)

    def _credit(self, frame: Credit) -> None:
        state = self._subs.get(frame.subscription)
        if state is not None:
            # more than prefetch is never needed: the transport bounds what is unsettled
            state.credit = min(state.prefetch, state.credit + frame.n)
            state.has_credit.set()

    async def _pump_taken(self, state: _Subscription, takes: AsyncIterator[Any]) -> None:
        """:meth:`_pump` for the embedded broker: its entries go out as stored, decoded
        only when the rights need the message (a client with a token: its reply inboxes)."""
        send, rights = self.stream.send, self.rights
        try:
            async for partition, taken in takes:
                while state.credit <= 0:
                    state.has_credit.clear()
                    await state.has_credit.wait()
                state.credit -= 1
                handle = next(self._handles)
                state.unsettled[handle] = taken
                if rights.client is not None:  # before the client can answer it
                    rights.delivered(decode_message(taken.entry))
                send(Deliver(state.id, partition, handle, taken.attempt, taken.entry))
        except ConnectionLost as exc:
            self._lost(state, str(exc))
        else:
            if state.id in self._subs:  # ended by the broker, not by Unsubscribe
                self._lost(state, "the broker ended it")

    async def _pump(self, state: _Subscription) -> None:
        """Move deliveries to the client while it has credit."""
        send = self.stream.send
        try:
            async for delivery in state.sub:
                while state.credit <= 0:
                    state.has_credit.clear()
                    await state.has_credit.wait()
                state.credit -= 1
                handle = next(self._handles)
                state.unsettled[handle] = delivery
                self.rights.delivered(delivery.message)  # before the client can answer it
                token = delivery.token
                if isinstance(token, Taken) and type(token.entry) is bytes:
                    data = token.entry  # the embedded broker's entry: encoded already
                else:
                    data = encode_message(delivery.message)
                send(Deliver(state.id, delivery.partition, handle, delivery.attempt, data))
        except ConnectionLost as exc:
            self._lost(state, str(exc))
        else:
            if state.id in self._subs:  # ended by the broker, not by Unsubscribe
                self._lost(state, "the broker ended it")

    def _lost(self, state: _Subscription, why: str) -> None:
        """The broker's side of a subscription failed: end the connection, so the client
        subscribes again."""
        log.error("broker server: %s: subscription to %r lost: %s", self.name, state.channel, why)
        self._farewell = Error(
            None,
            "internal",
            f"the broker lost the subscription to {state.channel!r} ({why}); reconnect and "
            "subscribe again",
        )
        self._stopping.set()

    # -- requests -------------------------------------------------------------------
    def _publish_now(self, request: Publish, publish_calling: PublishCalling) -> bool:
        """Publish without a task if nothing has to wait, answering once it is stored
        (in the commit's callback, with the others of its group); False: use a worker."""
        try:
            message = self._publishable(request)
            return publish_calling(
                request.channel,
                message,
                request.message,  # as the client encoded it: decoded above, so valid
                functools.partial(self._stored, request),
                priority=request.priority,
            )
        except Exception as exc:
            self.stream.send(self._error(request, exc))
            return True

    def _stored(self, request: Publish, error: BaseException | None) -> None:
        if error is None:
            self._ok(request.seq)
        elif isinstance(error, Exception):
            self.stream.send(self._error(request, error))

    async def _answer(self, request: Request) -> None:
        result: int | None = None
        try:
            if isinstance(request, Publish):
                try:
                    await self._publish(request)
                finally:
                    self._slow_publishes -= 1
            elif isinstance(request, Subscribe):
                result = await self._subscribe(request)
            elif isinstance(request, Unsubscribe):
                await self._unsubscribe(request)
            elif isinstance(request, Delete):
                await self._delete(request)
            else:
                await self._declare(request)
        except Exception as exc:  # every failure becomes the answer to this request
            self.stream.send(self._error(request, exc))
        else:
            if result is None:
                self._ok(request.seq)
            else:
                self.stream.send(Ok(request.seq, result))

    def _ok(self, seq: int) -> None:
        """Answer request ``seq`` with Ok, in the next Oks frame if the client reads them."""
        oks = self._oks
        if oks is None:
            self.stream.send(Ok(seq, None))
            return
        if not oks:
            self.stream.wake()
        oks.append(seq)

    def _send_oks(self) -> None:
        """As a write leaves: the Oks gathered since the last one, as one frame."""
        oks = self._oks
        if oks:
            self._oks = []
            for first in range(0, len(oks), _OKS_PER_FRAME):
                self.stream.send(Oks(tuple(oks[first : first + _OKS_PER_FRAME])))

    def _error(self, request: Request, exc: Exception) -> Error:
        error = Error.of(request.seq, exc)
        if error is None:
            log.error(
                "broker server: %s from %s failed", type(request).__name__, self.name, exc_info=exc
            )
            error = Error(request.seq, "internal", f"the broker failed: {exc!r}; try again")
        return error

    async def _publish(self, request: Publish) -> None:
        message = self._publishable(request)
        await self.broker.transport.publish(
            request.channel, message, not_before=request.not_before, priority=request.priority
        )

    def _publishable(self, request: Publish) -> Message:
        """The message ``request`` carries, if this client may publish it there."""
        limit = self.broker.welcome.max_message
        if len(request.message) > limit:
            raise MessageTooLarge(
                f"a message of {len(request.message)} bytes for channel {request.channel!r} "
                f"is over this broker's max_message of {limit} bytes; send a reference instead"
            )
        self.rights.check_publish(request.channel)
        self._exists(request.channel)
        return decode_message(request.message)

    async def _declare(self, request: Declare) -> None:
        self.rights.check_declare(request.channel)
        self._exists(request.channel)
        await self.broker.transport.declare(request.spec())

    async def _subscribe(self, request: Subscribe) -> int:
        if len(self._subs) >= MAX_SUBSCRIPTIONS:
            raise ProtocolError(
                "bad-request",
                f"this connection already has {MAX_SUBSCRIPTIONS} subscriptions, the most one "
                "may hold; close some, or open another connection",
            )
        self.rights.subscribing(request.channel, request.group)
        try:
            self._exists(request.channel)
            sub = await self.broker.transport.subscribe(
                request.channel,
                group=request.group,
                prefetch=request.prefetch,
                start=request.begin(),
                idle_expiry=request.idle_expiry,
            )
        except BaseException:
            self.rights.unsubscribed(request.channel)
            raise
        state = _Subscription(next(self._ids), request.channel, sub, request.prefetch)
        self._subs[state.id] = state
        takes = getattr(sub, "takes", None)
        if takes is not None and state.ack_now is not None and state.nack_now is not None:
            state.pump = self._spawn(self._pump_taken(state, takes()))
        else:
            state.ack_now = state.nack_now = None
            state.pump = self._spawn(self._pump(state))
        return state.id

    async def _delete(self, request: Delete) -> None:
        """Delete a channel or a group: a client with both rights on the channel may."""
        self.rights.check_delete(request.channel)
        await self.broker.transport.delete(request.channel, group=request.group)

    async def _unsubscribe(self, request: Unsubscribe) -> None:
        state = self._subs.pop(request.subscription, None)
        if state is not None:
            await self._close(state)

    def _exists(self, channel: str) -> None:
        """Refuse a channel the broker does not have, unless it creates channels on first use."""
        if not self.broker.config.auto_create and not self.broker.has_channel(channel):
            raise ProtocolError(
                "unknown-channel",
                f"channel {channel!r} does not exist on this broker, which does not create "
                "channels on first use (auto_create is off); have it created first",
            )

    async def _close_subscriptions(self) -> None:
        subs, self._subs = list(self._subs.values()), {}
        for state in subs:
            await self._close(state)

    async def _close(self, state: _Subscription) -> None:
        """Stop the pump and close the transport's subscription: unsettled ones come again."""
        if state.pump is not None:
            state.pump.cancel()
            state.pump = None  # its frame refers to state: no cycle through its CancelledError
        state.unsettled.clear()
        try:
            await state.sub.close()
        finally:
            self.rights.unsubscribed(state.channel)


_OKS_PER_FRAME = 65_536
"""Seqs in one Oks frame at most: well under any ``max_frame`` (5 bytes each)."""
_REQUESTS = (Publish, Declare, Subscribe, Unsubscribe, Delete)
