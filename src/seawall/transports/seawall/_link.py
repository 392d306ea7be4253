"""One connection of a ``seawall://`` client to the broker server.

A :class:`Link` owns the socket and one task that reads and writes it (see
:class:`~seawall._wire.streams.FramedStream`). Reading demultiplexes frames:
Ok and Error answer the pipelined request they name, Deliver goes to its
subscription's buffer; Oks answers many. Settling a delivery queues Ack or
Nack at once (to a server that reads Acks, the acks of one write go as one Acks
frame per subscription, before any later frame) and grants the credit back in
one Credit frame per subscription and write, in the same write as the Acks (one
segment: one wake-up of the server, not two).

When the connection breaks, every request still waiting fails and every
subscription of the link ends with :class:`~seawall.ConnectionLost`; the
transport opens a new link on its next call.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import AsyncIterator, Callable
from typing import Any

from ..._exceptions import ConnectionLost, ProtocolError, TransportClosed, TransportError
from ..._messages.envelope import decode_message
from ..._transport import Delivery
from ..._wire.protocol import (
    Ack,
    Acks,
    Credit,
    Deliver,
    Error,
    Frame,
    Goodbye,
    Nack,
    Ok,
    Oks,
    Request,
    Unsubscribe,
)
from ..._wire.state import Pipeline
from ..._wire.streams import FramedStream

__all__ = ["Link", "SeawallSubscription"]

log = logging.getLogger("seawall.transports.seawall")

_Waiter = tuple["asyncio.Future[int | None] | None", "SeawallSubscription | None"]


class Link:
    """An open connection to the broker; see the module docstring."""

    def __init__(
        self,
        stream: FramedStream,
        batches: AsyncIterator[list[Frame]],
        where: str,
        *,
        pipeline: int,
        batched: bool = False,
    ) -> None:
        self.stream = stream
        self.where = where
        self.pipeline: Pipeline[_Waiter] = Pipeline(limit=pipeline)
        self.subs: dict[int, SeawallSubscription] = {}
        self.failure: TransportError | None = None
        """Why the link is down, or None while it is open."""
        self._batches = batches
        self._room = asyncio.Event()  # the pipeline has room again, or the link failed
        self._credit: dict[int, int] = {}  # credit to grant back, by subscription id
        self._acks: dict[int, list[int]] | None = {} if batched else None
        """Offsets acked since the last write, by subscription id, for a server that
        reads Acks frames; None: one Ack frame each."""
        self._task: asyncio.Task[None] | None = None
        self._loop = asyncio.get_running_loop()
        stream.before_write = self._grant

    @property
    def open(self) -> bool:
        return self.failure is None

    def start(self) -> None:
        """Start reading and writing; the link's one task, ended by :meth:`close` or a failure."""
        self._task = self._loop.create_task(self._run())

    async def room(self) -> None:
        """Wait until the pipeline has room for a request; raises if the link is down."""
        while self.pipeline.full and self.failure is None:
            self._room.clear()
            await self._room.wait()
        if self.failure is not None:
            raise _fresh(self.failure)

    def request(
        self, kind: Callable[..., Request], *fields: Any, sub: SeawallSubscription | None = None
    ) -> asyncio.Future[int | None]:
        """Send the request ``kind(seq, *fields)``; the future of its answer (Ok's result).

        Wait for :meth:`room` first. A plain function, not a coroutine: a
        publish awaits the answer's future directly, which spares a coroutine
        per message.
        """
        if self.failure is not None:
            raise _fresh(self.failure)
        seq = self.pipeline.next_seq()
        if self._acks:
            self._send_acks()
        self.stream.send(kind(seq, *fields))
        future: asyncio.Future[int | None] = self._loop.create_future()
        self.pipeline.expect(seq, (future, sub))
        return future

    async def ask(
        self, kind: Callable[..., Request], *fields: Any, sub: SeawallSubscription | None = None
    ) -> int | None:
        """Wait for room, send the request and wait for its answer."""
        await self.room()
        return await self.request(kind, *fields, sub=sub)

    def settle(self, frame: Ack | Nack) -> None:
        """Send an Ack or Nack and grant its credit back (batched per write)."""
        if self.failure is not None:
            return
        if self._acks:
            self._send_acks()
        self.stream.send(frame)
        credit = self._credit
        credit[frame.subscription] = credit.get(frame.subscription, 0) + 1

    def ack(self, sub_id: int, partition: int, offset: int) -> None:
        """Ack a delivery and grant its credit back (both batched per write)."""
        acks = self._acks
        if acks is None:
            self.settle(Ack(sub_id, partition, offset))
            return
        if self.failure is not None:
            return
        if not acks:
            self.stream.wake()
        offsets = acks.get(sub_id)
        if offsets is None:
            acks[sub_id] = [offset]
        else:
            offsets.append(offset)
        credit = self._credit
        credit[sub_id] = credit.get(sub_id, 0) + 1

    def _send_acks(self) -> None:
        """Queue the acks gathered since the last write: one Acks frame per subscription."""
        acks, self._acks = self._acks, {}
        if acks and self.failure is None:
            for sub_id, offsets in acks.items():
                self.stream.send(Acks(sub_id, tuple(offsets)))

    def _grant(self) -> None:
        """Queue the acks and the credit settled since the last write, as that write leaves."""
        if self._acks:
            self._send_acks()
        if not self._credit:
            return
        grants, self._credit = self._credit, {}
        if self.failure is None:
            for sub_id, n in grants.items():
                if sub_id in self.subs:
                    self.stream.send(Credit(sub_id, n))

    async def unsubscribe(self, sub: SeawallSubscription) -> None:
        """Tell the server ``sub`` is gone; its unsettled deliveries come again."""
        if sub.id is not None and self.subs.pop(sub.id, None) is not None and self.open:
            # if the connection goes meanwhile, the server returns them anyway
            with contextlib.suppress(TransportError):
                await self.ask(Unsubscribe, sub.id)

    # -- the link's task -------------------------------------------------------------
    async def _run(self) -> None:
        failure: TransportError = ConnectionLost(f"the link to the broker at {self.where} ended")
        try:
            async with asyncio.TaskGroup() as group:
                writing = group.create_task(self.stream.write_loop())
                reading = group.create_task(self._read())
                silent = group.create_task(self.stream.keep_alive())
                ends = {reading, silent, writing}
                await asyncio.wait(ends, return_when=asyncio.FIRST_COMPLETED)
                failure = self._why(reading, silent)
                for task in (writing, reading, silent):
                    task.cancel()
        except Exception as exc:
            log.exception("seawall transport: the link to %s failed", self.where)
            failure = ConnectionLost(f"the link to the broker at {self.where} failed: {exc!r}")
        finally:
            self.fail(failure)
        if not isinstance(self.failure, TransportClosed):
            await self.stream.close()

    def _why(
        self, reading: asyncio.Task[TransportError], silent: asyncio.Task[None]
    ) -> TransportError:
        if reading.done():
            return reading.result()
        if silent.done():
            beat = self.stream.heartbeat
            return ConnectionLost(
                f"the broker at {self.where} sent nothing for {beat.misses * beat.interval:.1f} s"
            )
        return ConnectionLost(f"lost the connection to the broker at {self.where} while writing")

    async def _read(self) -> TransportError:
        """Demultiplex incoming frames until the link ends; why it ended."""
        try:
            async for batch in self._batches:
                for frame in batch:
                    if isinstance(frame, Deliver):
                        self._deliver(frame)
                    elif isinstance(frame, Oks):
                        self._answer_oks(frame)
                    elif isinstance(frame, Ok) or (
                        isinstance(frame, Error) and frame.seq is not None
                    ):
                        self._answer(frame)
                    elif isinstance(frame, Error):
                        return ConnectionLost(
                            f"the broker at {self.where} ended the connection ({frame.code}): "
                            f"{frame.message}"
                        )
                    elif isinstance(frame, Goodbye):
                        return ConnectionLost(
                            f"the broker at {self.where} closed the connection: {frame.reason}"
                        )
                    elif not self.stream.answer_ping(frame):
                        raise ProtocolError(
                            "bad-request", f"the server sent a {type(frame).__name__} frame"
                        )
        except ProtocolError as exc:
            log.warning("seawall transport: broker at %s: %s", self.where, exc)
            self.stream.send(Error(None, "bad-request", str(exc)))
            return ConnectionLost(f"the link to the broker at {self.where} failed: {exc}")
        except OSError as exc:
            return ConnectionLost(f"lost the connection to the broker at {self.where}: {exc}")
        return ConnectionLost(f"the broker at {self.where} closed the connection")

    def _answer(self, frame: Ok | Error) -> None:
        if self.failure is not None:
            # Closed while this batch was already read: the pipeline was abandoned and
            # its waiters failed, so the answer is late, not out of step.
            return
        future, sub = self.pipeline.resolve(frame)
        self._room.set()
        if isinstance(frame, Error):
            if future is not None and not future.done():
                future.set_exception(frame.exception())
            return
        if sub is not None and frame.result is not None:
            if future is None or future.done():  # its caller gave up: give it back
                self._give_back(frame.result)
                return
            sub.id = frame.result
            self.subs[sub.id] = sub  # before any Deliver for it is read
        if future is not None and not future.done():
            future.set_result(frame.result)

    def _answer_oks(self, frame: Oks) -> None:
        if self.failure is not None:
            return  # late, as in _answer
        take = self.pipeline.take
        for seq in frame.seqs:
            future, _ = take(seq)
            if future is not None and not future.done():
                future.set_result(None)
        self._room.set()

    def _give_back(self, sub_id: int) -> None:
        if self.pipeline.full:  # rare: its deliveries return when the link ends
            log.warning("seawall transport: could not give back subscription %d", sub_id)
            return
        seq = self.pipeline.next_seq()
        if self._acks:
            self._send_acks()
        self.stream.send(Unsubscribe(seq, sub_id))
        self.pipeline.expect(seq, (None, None))

    def _deliver(self, frame: Deliver) -> None:
        sub = self.subs.get(frame.subscription)
        if sub is not None:  # else unsubscribed: the server takes them back
            sub.push(frame)

    # -- ending ----------------------------------------------------------------------
    def fail(self, failure: TransportError) -> None:
        """The link is down: fail waiting requests, end subscriptions."""
        if self.failure is not None:
            return
        if self._acks:  # queued as a single Ack would have been: they leave if still possible
            self._send_acks()
        self.failure = failure
        self._room.set()
        for future, _ in self.pipeline.abandon():
            if future is not None and not future.done():
                future.set_exception(_fresh(failure))
        subs, self.subs = list(self.subs.values()), {}
        for sub in subs:
            sub.end(None if isinstance(failure, TransportClosed) else _fresh(failure))

    def abort(self) -> None:
        """Drop the connection now, as a network failure right after the last write would."""
        self.fail(ConnectionLost(f"the link to the broker at {self.where} was dropped"))
        self.stream.abort(flush=True)

    async def close(self) -> None:
        """Say Goodbye and close; subscriptions end, waiting requests fail."""
        self.fail(TransportClosed(f"the seawall transport to {self.where} is closed"))
        if self._task is not None:
            self._task.cancel()
            await asyncio.wait({self._task})
        await self.stream.close(Goodbye("client closing"))


class SeawallSubscription:
    """A group member's deliveries from the broker server; see the transport's docstring."""

    def __init__(self, link: Link, channel: str, prefetch: int) -> None:
        self.link = link
        self.channel = channel
        self.prefetch = prefetch
        self.id: int | None = None
        """The server's id, known once Subscribe was answered."""
        self.closed = False
        self._buffer: deque[Deliver] = deque()
        self._wake = asyncio.Event()
        self._error: TransportError | None = None
        self._intake = True  # False once stop_intake was called

    def push(self, frame: Deliver) -> None:
        """A Deliver arrived for this subscription."""
        if len(self._buffer) >= self.prefetch:
            raise ProtocolError(
                "bad-request",
                f"the server sent more than prefetch={self.prefetch} deliveries for "
                f"subscription {self.id} without credit",
            )
        self._buffer.append(frame)
        self._wake.set()

    def end(self, error: TransportError | None) -> None:
        """The link ended: iteration stops, raising ``error`` if given."""
        self.closed = True
        self._error = error
        self._buffer.clear()  # unsettled: they come again
        self._wake.set()

    def __aiter__(self) -> AsyncIterator[Delivery]:
        return self._deliveries()

    async def _deliveries(self) -> AsyncIterator[Delivery]:
        buffer, channel = self._buffer, self.channel
        while True:
            if buffer and self._intake:
                frame = buffer.popleft()
                yield Delivery(
                    message=decode_message(frame.message),
                    channel=channel,
                    partition=frame.partition,
                    attempt=frame.attempt,
                    token=frame.offset,
                )
            elif self._error is not None:
                raise self._error
            elif self.closed or not self._intake:
                return
            else:
                self._wake.clear()
                await self._wake.wait()

    async def ack(self, delivery: Delivery) -> None:
        if not self.closed and self.id is not None:
            self.link.ack(self.id, delivery.partition, _offset(delivery))

    async def nack(self, delivery: Delivery, *, delay: float = 0.0) -> None:
        if not self.closed and self.id is not None:
            self.link.settle(Nack(self.id, delivery.partition, _offset(delivery), max(0.0, delay)))

    async def stop_intake(self) -> None:
        """Iteration ends. The server may still send deliveries within the credit; they
        wait here and come again at close, after what was nacked (the server's group log
        orders its redeliveries)."""
        self._intake = False
        self._wake.set()

    async def close(self) -> None:
        if not self.closed:
            self.end(None)
            await self.link.unsubscribe(self)


def _offset(delivery: Delivery) -> int:
    offset = delivery.token
    if not isinstance(offset, int):
        raise TypeError(f"{delivery!r} did not come from a seawall:// subscription")
    return offset


def _fresh(failure: TransportError) -> TransportError:
    """A new exception like ``failure``: one instance raised in many tasks would pile up
    their tracebacks."""
    return type(failure)(str(failure))
