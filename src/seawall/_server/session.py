"""One client connection on the broker server: frames in, transport calls, frames out.

A :class:`Session` speaks the protocol of :mod:`seawall._wire.protocol` for one
client over a :class:`~seawall._wire.streams.FramedStream`, on behalf of the
:class:`~seawall._server.server.BrokerServer` that accepted it:

* Hello is checked against the server's :class:`~seawall._server.acl.ServerConfig`
  (token, then the rights of every later request).
* Requests (Declare, Publish, Subscribe, Unsubscribe, Delete) go to a pool of
  :class:`~seawall._server.workers.Workers`, so a publish waiting for a full
  channel or for its disk commit holds up neither the other requests nor
  acks, while a publish that completes at once costs no task of its own.
  Each request is answered as soon as its transport call returned.
* Each subscription has a pump task moving deliveries from the transport's
  subscription to the client while the client's credit lasts.
* Ack, Nack and Credit are handled in the reading task itself, in order.

Every task of a session lives in its TaskGroup; when the connection ends,
for whatever reason, the session's subscriptions are closed, so their
unsettled deliveries come again.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

import msgspec

from .._clock import Clock, timeout_at
from .._exceptions import (
    ConnectionLost,
    MessageTooLarge,
    PermissionDenied,
    ProtocolError,
)
from .._messages.envelope import decode_message, encode_message
from .._transport import Delivery, Subscription, Transport
from .._wire.protocol import (
    PROTOCOL_VERSION,
    Ack,
    Credit,
    Declare,
    Delete,
    Deliver,
    Error,
    Frame,
    Goodbye,
    Hello,
    Nack,
    Ok,
    Publish,
    Request,
    Subscribe,
    Unsubscribe,
    Welcome,
)
from .._wire.state import Heartbeat
from .._wire.streams import FramedStream
from .acl import Client, ServerConfig
from .workers import Workers

__all__ = ["Served", "Session"]

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


class Served:
    """What every session of one server shares: the transport, the rules, the terms."""

    def __init__(self, transport: Transport, config: ServerConfig, clock: Clock, name: str) -> None:
        self.transport = transport
        self.config = config
        self.clock = clock
        capabilities = transport.capabilities
        limit = capabilities.max_message_bytes
        max_message = config.max_message if limit is None else min(limit, config.max_message)
        self.welcome = Welcome(
            PROTOCOL_VERSION,
            name,
            max_frame=config.max_frame,
            max_message=max_message,
            heartbeat=config.heartbeat,
            durability=capabilities.durability.value,
            partitions=capabilities.partitions,
            delayed_redelivery=capabilities.delayed_redelivery,
            delayed_delivery=capabilities.delayed_delivery,
            replay=capabilities.replay,
            priorities=capabilities.priorities,
        )

    def has_channel(self, name: str) -> bool:
        """Whether the transport has ``name``; only asked when ``auto_create`` is off."""
        return bool(self.transport.has_channel(name))  # type: ignore[attr-defined]


class _Subscription:
    """A client's subscription: the transport's, plus credit and the deliveries out."""

    __slots__ = ("channel", "credit", "has_credit", "id", "prefetch", "pump", "sub", "unsettled")

    def __init__(self, id: int, channel: str, sub: Subscription, prefetch: int) -> None:
        self.id = id
        self.channel = channel
        self.sub = sub
        self.prefetch = prefetch
        self.credit = prefetch
        self.has_credit = asyncio.Event()
        self.unsettled: dict[int, Delivery] = {}  # by the handle sent as Deliver.offset
        self.pump: asyncio.Task[None] | None = None


class _Ended(Exception):
    """The connection is over; ``last`` is the frame to leave with, if any."""

    def __init__(self, last: Frame | None) -> None:
        self.last = last


class Session:
    """Serves one connected client until it leaves, fails, falls silent or the server stops."""

    def __init__(self, broker: Served, stream: FramedStream, peer: str) -> None:
        self.broker = broker
        self.stream = stream
        self.name = peer
        """Who this is, for logs: the peer address, then the client's name too."""
        self.client: Client | None = None
        self._subs: dict[int, _Subscription] = {}
        self._ids = itertools.count(1)
        self._handles = itertools.count()
        self._requests: Workers[Request] = Workers(
            self._answer, self._spawn, limit=WORKERS, backlog=BACKLOG
        )
        self._stopping = asyncio.Event()
        self._farewell: Frame = Goodbye("the broker server is shutting down")
        self._tasks: set[asyncio.Task[Any]] = set()
        self._group: asyncio.TaskGroup | None = None

    def stop(self) -> None:
        """Ask the session to finish its requests, say Goodbye and close."""
        self._stopping.set()

    async def run(self) -> None:
        """Serve the connection to its end; never raises."""
        last: Frame | None = None
        try:
            batches = self.stream.batches()
            first = await self._handshake(batches)
            await self._serve(first, batches)
        except _Ended as ended:
            last = ended.last
        except Exception:
            log.exception("broker server: the session of %s failed; closing it", self.name)
            last = Error(None, "internal", "the broker failed serving this connection; reconnect")
        finally:
            await self._close_subscriptions()
            await self.stream.close(last)

    # -- handshake --------------------------------------------------------------
    async def _handshake(self, batches: AsyncIterator[list[Frame]]) -> list[Frame]:
        """Check Hello, answer Welcome; the frames that came with Hello."""
        clock, config = self.broker.clock, self.broker.config
        try:
            async with timeout_at(clock, clock.time() + 3 * config.heartbeat):
                hello, *rest = await anext(batches)
        except (StopAsyncIteration, OSError, TimeoutError):
            raise _Ended(None) from None
        except ProtocolError as exc:
            raise _Ended(Error.of(None, exc)) from None
        if not isinstance(hello, Hello):
            raise _Ended(
                Error(
                    None,
                    "bad-request",
                    f"the first frame must be Hello, not {type(hello).__name__}",
                )
            )
        self._authenticate(hello)
        interval = min(hello.heartbeat, config.heartbeat)
        self.stream.heartbeat = Heartbeat(interval, clock.time())
        version = min(hello.version, PROTOCOL_VERSION)
        self.stream.peer_max_frame = config.max_frame
        welcome = self.broker.welcome
        self.stream.send(msgspec.structs.replace(welcome, version=version, heartbeat=interval))
        return rest

    def _authenticate(self, hello: Hello) -> None:
        self.name = f"client {hello.client!r} at {self.name}"
        config = self.broker.config
        if config.open:
            return
        self.client = config.authenticate(hello.token)
        if self.client is None:
            log.warning("broker server refused %s: no valid token", self.name)
            raise _Ended(
                Error(
                    None,
                    "permission-denied",
                    "this broker requires a token and the one given (if any) is not valid; "
                    "pass the token configured for this client",
                )
            )
        self.name = f"client {self.client.name!r} at {self.name.rsplit(' at ', 1)[1]}"

    # -- serving ------------------------------------------------------------------
    async def _serve(self, first: list[Frame], batches: AsyncIterator[list[Frame]]) -> None:
        async with asyncio.TaskGroup() as group:
            self._group = group
            self._spawn(self.stream.write_loop())
            reading = self._spawn(self._read(first, batches))
            silent = self._spawn(self.stream.keep_alive())
            stopping = self._spawn(self._stopping.wait())
            await asyncio.wait({reading, silent, stopping}, return_when=asyncio.FIRST_COMPLETED)
            last = await self._ending(reading, silent)
            for task in self._tasks:
                task.cancel()
        raise _Ended(last)

    async def _ending(
        self, reading: asyncio.Task[Frame | None], silent: asyncio.Task[None]
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
        await self._finish_requests()
        return self._farewell

    async def _finish_requests(self) -> None:
        """Let requests already read complete (bounded), so their answers go out."""
        clock = self.broker.clock
        try:
            async with timeout_at(clock, clock.time() + self.broker.config.heartbeat):
                await self._requests.quiet()
        except TimeoutError:
            log.warning("broker server: %s still had requests running at shutdown", self.name)

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        """A task of this session: cancelled when it ends."""
        assert self._group is not None
        task = self._group.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _read(self, first: list[Frame], batches: AsyncIterator[list[Frame]]) -> Frame | None:
        """Handle incoming frames until the client leaves; the last frame to send it."""
        try:
            if await self._handle_all(first):
                return None
            async for batch in batches:
                if await self._handle_all(batch):
                    return None
                await self._requests.room()
        except ProtocolError as exc:
            log.warning("broker server: closing %s: %s", self.name, exc)
            return Error.of(None, exc)
        except OSError as exc:
            log.info("broker server: lost %s: %s", self.name, exc)
        return None

    async def _handle_all(self, frames: list[Frame]) -> bool:
        """Handle ``frames`` in order; whether the client said Goodbye."""
        for frame in frames:
            if isinstance(frame, _REQUESTS):
                self._requests.put(frame)
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
            await state.sub.ack(delivery)

    async def _nack(self, frame: Nack) -> None:
        state = self._subs.get(frame.subscription)
        if state is not None and (delivery := state.unsettled.pop(frame.offset, None)):
            await state.sub.nack(delivery, delay=frame.delay)

    def _credit(self, frame: Credit) -> None:
        state = self._subs.get(frame.subscription)
        if state is not None:
            # more than prefetch is never needed: the transport bounds what is unsettled
            state.credit = min(state.prefetch, state.credit + frame.n)
            state.has_credit.set()

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
    async def _answer(self, request: Request) -> None:
        result: int | None = None
        try:
            if isinstance(request, Publish):
                await self._publish(request)
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
            self.stream.send(Ok(request.seq, result))

    def _error(self, request: Request, exc: Exception) -> Error:
        error = Error.of(request.seq, exc)
        if error is None:
            log.error(
                "broker server: %s from %s failed", type(request).__name__, self.name, exc_info=exc
            )
            error = Error(request.seq, "internal", f"the broker failed: {exc!r}; try again")
        return error

    async def _publish(self, request: Publish) -> None:
        limit = self.broker.welcome.max_message
        if len(request.message) > limit:
            raise MessageTooLarge(
                f"a message of {len(request.message)} bytes for channel {request.channel!r} "
                f"is over this broker's max_message of {limit} bytes; send a reference instead"
            )
        self._check(request.channel, "publish to", Client.may_publish)
        message = decode_message(request.message)
        await self.broker.transport.publish(
            request.channel, message, not_before=request.not_before, priority=request.priority
        )

    async def _declare(self, request: Declare) -> None:
        self._check(request.channel, "declare", Client.may_declare)
        await self.broker.transport.declare(request.spec())

    async def _subscribe(self, request: Subscribe) -> int:
        self._check(request.channel, "subscribe to", Client.may_subscribe)
        if len(self._subs) >= MAX_SUBSCRIPTIONS:
            raise ProtocolError(
                "bad-request",
                f"this connection already has {MAX_SUBSCRIPTIONS} subscriptions, the most one "
                "may hold; close some, or open another connection",
            )
        sub = await self.broker.transport.subscribe(
            request.channel, group=request.group, prefetch=request.prefetch, start=request.begin()
        )
        state = _Subscription(next(self._ids), request.channel, sub, request.prefetch)
        self._subs[state.id] = state
        state.pump = self._spawn(self._pump(state))
        return state.id

    async def _delete(self, request: Delete) -> None:
        """Delete a channel or a group: a client with both rights on the channel may."""
        client = self.client
        if client is not None and not (
            client.may_publish(request.channel) and client.may_subscribe(request.channel)
        ):
            raise PermissionDenied(
                f"client {client.name!r} may not delete channel {request.channel!r} or its "
                "groups: that takes both the publish and the subscribe right on it"
            )
        await self.broker.transport.delete(request.channel, group=request.group)

    async def _unsubscribe(self, request: Unsubscribe) -> None:
        state = self._subs.pop(request.subscription, None)
        if state is not None:
            await _close(state)

    def _check(self, channel: str, action: str, may: Callable[[Client, str], bool]) -> None:
        """Refuse ``action`` on ``channel`` unless this client ``may``, and the channel exists."""
        client = self.client
        if client is not None and not may(client, channel):
            raise PermissionDenied(
                f"client {client.name!r} may not {action} channel {channel!r}; its rights "
                "are the publish / subscribe patterns in the broker's config"
            )
        if not self.broker.config.auto_create and not self.broker.has_channel(channel):
            raise ProtocolError(
                "unknown-channel",
                f"channel {channel!r} does not exist on this broker, which does not create "
                "channels on first use (auto_create is off); have it created first",
            )

    async def _close_subscriptions(self) -> None:
        subs, self._subs = list(self._subs.values()), {}
        for state in subs:
            await _close(state)


async def _close(state: _Subscription) -> None:
    """Stop the pump and close the transport's subscription: unsettled ones come again."""
    if state.pump is not None:
        state.pump.cancel()
    state.unsettled.clear()
    await state.sub.close()


_REQUESTS = (Publish, Declare, Subscribe, Unsubscribe, Delete)
