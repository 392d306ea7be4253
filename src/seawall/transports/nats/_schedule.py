"""Delayed delivery on NATS JetStream: messages wait in their channel's stream and
movers publish each one to its log once it is due.

nats-server 2.9 has no per-message delay on publish, so the adapter builds one
from what JetStream does have: a stored subject, a durable consumer shared by
competing readers, and NAK with a delay.

* **Publishing** (:func:`scheduled_headers`): a message with ``not_before`` goes
  to its channel's schedule subject ``seawall.<tok>.scheduled`` (see
  :mod:`._layout`) with its CloudEvents headers and two more:
  ``Seawall-Not-Before`` (epoch seconds) and ``Seawall-Log`` (the partition or
  priority level it is for, chosen from its key or priority when published).
  Its ``Nats-Msg-Id`` is the message's own with ``.scheduled`` appended, so the
  later move is no duplicate of it. It is stored like any message of the
  channel (file storage, the channel's replicas), so a schedule survives
  restarts of the server and of every client, and it counts in the channel's
  bound until it is moved.
* **Moving** (:class:`Mover`): every subscription of a channel runs a mover on
  the channel's durable consumer ``_schedule`` (explicit ack, no limit on
  pending acks, so messages waiting for a distant time never hold back nearer
  ones). JetStream hands each waiting message to one reader at a time, which is
  why several processes need no lock or leader: a mover handed a message that
  is not yet due NAKs it with the time left as its delay, and JetStream hands it
  out again then, to whichever mover is reading; a mover handed a due message
  publishes it to its log without the two headers and under the message's own
  ``Nats-Msg-Id`` (acknowledged by the stream), then acks it and deletes it
  from the stream: an acked message would otherwise keep its place in the
  bound until every earlier one had been acked too.
* **Failures**: a mover whose process dies between the publish and the ack
  leaves the message pending; JetStream hands it out again after ``ack_wait``
  and it is published again, which JetStream drops as a duplicate within its
  2-minute window (a later second copy is possible: at least once). A move
  refused because the channel is full is tried again a second later.
* **Timing and order**: a message reaches its log within a round trip or two
  of its time while some subscription of its channel runs; one that falls due
  while none does is moved when one starts. Messages due at the same time may
  be moved in any order, and a moved message takes its place in its log when
  it is moved, behind what was published meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import TYPE_CHECKING

import nats.errors
import nats.js.errors
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription as NatsSubscriptionHandle
from nats.js import api

from ..._clock import timeout_at
from ..._exceptions import TransportError
from ..._tasks import TaskScope
from ._layout import SCHEDULER, Stream
from ._wire import MSG_ID, translated

if TYPE_CHECKING:
    from . import NatsTransport

__all__ = ["LOG", "NOT_BEFORE", "Mover", "scheduled_headers"]

log = logging.getLogger("seawall.transports.nats")

NOT_BEFORE = "Seawall-Not-Before"
LOG = "Seawall-Log"
_SUFFIX = ".scheduled"
_BATCH = 64
"""Waiting messages one pull request asks for."""
_FULL_RETRY = 1.0
"""Seconds before a move that found the channel full is tried again."""
_STATUS = "Status"


def scheduled_headers(headers: dict[str, str], due: float, log_index: int) -> dict[str, str]:
    """The headers a message waits under: its own, its time and its log, another msg id."""
    return {
        **headers,
        MSG_ID: headers[MSG_ID] + _SUFFIX,
        NOT_BEFORE: repr(due),
        LOG: str(log_index),
    }


def moved_headers(headers: dict[str, str]) -> dict[str, str]:
    """The headers a due message is published to its log under: as it was published."""
    moved = {k: v for k, v in headers.items() if k not in (NOT_BEFORE, LOG)}
    moved[MSG_ID] = moved[MSG_ID].removesuffix(_SUFFIX)
    return moved


class Mover:
    """Moves a channel's due messages to their logs; see the module docstring."""

    def __init__(self, transport: NatsTransport, stream: Stream) -> None:
        self.transport = transport
        self.stream = stream
        self._queue: asyncio.Queue[Msg | None] = asyncio.Queue()
        self._open_until = 0.0  # when the open pull request ends (0: none is open)
        self._left = 0  # messages the open pull request may still bring
        self._handle: NatsSubscriptionHandle | None = None
        self._scope = TaskScope()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False

    async def start(self) -> None:
        """Make sure the channel's ``_schedule`` consumer exists, then start moving."""
        await self._consumer()
        client = self.transport.client
        self._inbox = client.new_inbox()
        with translated(f"reading the schedule of channel {self.stream.channel!r}"):
            self._handle = await client.subscribe(f"{self._inbox}.*", cb=self._arrived)
        self._task = self._scope.create_task(self._run())

    async def _consumer(self) -> None:
        config = api.ConsumerConfig(
            durable_name=SCHEDULER,
            ack_policy=api.AckPolicy.EXPLICIT,
            ack_wait=self.transport.ack_wait,
            max_deliver=-1,
            max_ack_pending=-1,
            filter_subject=self.stream.schedule,
            deliver_policy=api.DeliverPolicy.ALL,
        )
        js = await self.transport.link()
        with translated(f"reading the schedule of channel {self.stream.channel!r}"):
            try:
                await js.consumer_info(self.stream.name, SCHEDULER)
            except nats.js.errors.NotFoundError:
                await js.add_consumer(self.stream.name, config)

    async def _arrived(self, msg: Msg) -> None:
        status = msg.headers.get(_STATUS) if msg.headers else None
        if status is None:
            self._left -= 1
            if self._left <= 0:
                self._open_until = 0.0
            self._queue.put_nowait(msg)
        elif status == "408":  # the request expired: ask again at once
            self._open_until = 0.0
            self._queue.put_nowait(None)
        elif status != "100":  # refused (409, 503): ask again a little later, not in a loop
            log.debug("schedule pull on %s refused: %s", self.stream.name, status)
            self._open_until = self.transport.clock.time() + _FULL_RETRY
            self._queue.put_nowait(None)

    async def _run(self) -> None:
        clock = self.transport.clock
        while not self._stopping:
            if self._open_until <= clock.time():
                await self._request()
            msg: Msg | None = None
            with contextlib.suppress(TimeoutError):
                async with timeout_at(clock, self._open_until):
                    msg = await self._queue.get()
            if msg is not None and not self._stopping:
                await self._settle(msg)
            elif msg is not None:
                self._queue.put_nowait(msg)  # given back by stop

    async def _request(self) -> None:
        transport = self.transport
        expires = transport.pull_expires
        body = json.dumps({"batch": _BATCH, "expires": int(expires * 1e9)}).encode()
        subject = f"$JS.API.CONSUMER.MSG.NEXT.{self.stream.name}.{SCHEDULER}"
        self._left = _BATCH
        self._open_until = transport.clock.time() + expires + transport.api_timeout
        with contextlib.suppress(nats.errors.Error):
            await transport.client.publish(subject, body, reply=f"{self._inbox}.1")

    async def _settle(self, msg: Msg) -> None:
        """NAK a message until its time, or move it once due."""
        headers = msg.headers or {}
        try:
            due, index = float(headers[NOT_BEFORE]), int(headers[LOG])
        except (KeyError, ValueError):
            log.warning("dropped a message on %s without its time or log", self.stream.schedule)
            await self._done(msg)
            return
        left = due - self.transport.clock.time()
        with contextlib.suppress(nats.errors.Error):
            if left > 0:
                await msg.nak(delay=left)
            elif await self._move(msg, headers, index):
                await self._done(msg)
            else:
                await msg.nak(delay=_FULL_RETRY)

    async def _move(self, msg: Msg, headers: dict[str, str], index: int) -> bool:
        """Publish a due message to its log; False if it could not be stored now."""
        transport, stream = self.transport, self.stream
        subject = stream.subject(min(max(index, 0), stream.logs - 1))
        headers = moved_headers(headers)
        what = f"moving a due message to channel {stream.channel!r}"
        try:
            outcome = await transport._store(subject, msg.data, headers, what)
            if outcome == "full" and await transport._trim(stream):
                outcome = await transport._store(subject, msg.data, headers, what)
        except TransportError as exc:
            log.warning("%s failed (%s); trying again in %.0f s", what, exc, _FULL_RETRY)
            return False
        return outcome == "stored"

    async def _done(self, msg: Msg) -> None:
        """Ack a moved (or unreadable) message and delete it, freeing its place."""
        await msg.ack()
        js = await self.transport.link()
        with contextlib.suppress(nats.errors.Error, nats.js.errors.Error):
            await js.delete_msg(self.stream.name, msg.metadata.sequence.stream)

    async def stop(self) -> None:
        """Stop moving: the message being moved is finished, queued ones go back at once."""
        self._stopping = True
        self._queue.put_nowait(None)
        handle, self._handle = self._handle, None
        if handle is not None:
            with contextlib.suppress(nats.errors.Error):
                await handle.unsubscribe()
        if self._task is not None:
            await asyncio.wait({self._task}, timeout=self.transport.api_timeout)
        await self._scope.__aexit__(None, None, None)
        while not self._queue.empty():
            msg = self._queue.get_nowait()
            if msg is not None:
                with contextlib.suppress(nats.errors.Error):
                    await msg.nak()
