"""Running sagas: the asyncio side around :class:`~seawall.sagas._machine.SagaMachine`.

A :class:`SagaRunner` runs every instance of some sagas for one service. It
keeps the instances under way in memory (their state is in the event store;
memory is a cache) and does three things at once in :meth:`SagaRunner.run`:

* **relay**: a decision's commands are published right after its events
  are stored (never before: the log is the saga's outbox). The relay reads
  the log after its checkpoint every ``poll`` seconds and publishes the
  commands this process has not published (after a restart: every command
  after the checkpoint), then moves the checkpoint. A crash between store and
  publish publishes again, under the same message id (participants' inboxes
  drop the repeat).
* **replies**: consumes the saga reply channel (``<service>.saga-replies``, a
  durable point-to-point channel, not a per-process inbox), finds the
  instance by the reply's correlation id, lets the machine decide, appends,
  and only then acknowledges.
* **timers**: asks the machine at each instance's next due time (attempt
  timeouts, retries, the saga's timeout), on the injectable clock.

On start it folds the store's saga streams and resumes every unfinished
instance of its sagas: a process killed between any two steps goes on where
its log stops. Decisions for one instance are serialised by a lock; an
append that fails reloads the instance from the store.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import msgspec

from .._clock import Clock, SystemClock, wait_until
from .._exceptions import ConcurrencyError, ConfigurationError, EventStoreError, SeawallError
from .._messages.codec import JSON, Codec
from .._messages.envelope import Message, from_headers
from .._transport import Transport
from ..es import EventStore, RecordedEvent
from ._definition import Saga
from ._events import CommandSent, SagaCompleted, SagaEvent, SagaRejected
from ._log import PREFIX, STUCK_AFTER, SagaLog, SagaView
from ._machine import SagaMachine
from ._state import SagaState

__all__ = ["SagaRunner", "SagaStats"]

log = logging.getLogger("seawall.sagas")

D = TypeVar("D", bound=msgspec.Struct)
Decide = Callable[[SagaMachine[Any], SagaState], list[SagaEvent]]
_ENDS = (SagaCompleted.type_name, SagaRejected.type_name)


@dataclass
class SagaStats:
    """A runner's counters; tests, metrics and tools read this one object."""

    started: int = 0
    completed: int = 0
    rejected: int = 0
    resumed: int = 0
    """Unfinished instances picked up from the store at start."""
    commands: int = 0
    """Commands published by the relay (repeats after a crash included)."""
    replies: int = 0
    ignored: int = 0
    """Replies that changed nothing: repeats, late ones, unknown sagas."""
    conflicts: int = 0


class SagaRunner:
    """Runs ``sagas`` for ``service`` on ``store`` and ``transport``; see the module doc.

    ``on_stored(state, events)`` is called after each append (metrics, tracing, a test
    that stops the process at a chosen step boundary).
    """

    def __init__(
        self,
        store: EventStore,
        transport: Transport,
        *sagas: Saga[Any],
        service: str,
        clock: Clock | None = None,
        codec: Codec = JSON,
        concurrency: int = 128,
        poll: float = 0.5,
        on_stored: Callable[[SagaState, Sequence[SagaEvent]], None] | None = None,
    ) -> None:
        if not sagas:
            raise ConfigurationError(f"SagaRunner for {service!r} needs at least one Saga")
        self.store = store
        self.transport = transport
        self.service = service
        self.clock = clock or SystemClock()
        self.replies = f"{service}.saga-replies"
        """The channel the participants reply to."""
        self.log = SagaLog(store)
        self._machines = {
            s.name: SagaMachine(s, source=service, replies=self.replies, codec=codec) for s in sagas
        }
        self._active: dict[str, SagaState] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._waiters: dict[str, list[asyncio.Future[SagaView]]] = {}
        self._limit = asyncio.Semaphore(concurrency)
        self._changed = asyncio.Event()
        self._wake_at = float("inf")
        self._published: set[str] = set()
        self._inflight: set[str] = set()
        self._ended: set[str] = set()
        self._poll = poll
        self._stats = SagaStats()
        self.checkpoint = f"sagas:relay:{service}"
        self._on_stored = on_stored

    def statistics(self) -> SagaStats:
        """The runner's counters (one live object)."""
        return self._stats

    # -- starting and waiting -------------------------------------------------------------

    async def start(self, saga: Saga[D], id: str, data: D) -> SagaView:
        """Start instance ``id`` of ``saga`` with ``data``; a second start of ``id`` changes
        nothing (it is the same instance) and returns where it is."""
        machine = self._machine(saga.name)
        stream = saga.stream(id)
        async with self._lock(stream):
            state = await self._state(stream)
            if state is None:
                state, events = machine.start(id, data, self.clock.time())
                try:
                    await self._append(state, events)
                except ConcurrencyError:  # started elsewhere meanwhile
                    state = await self.log.load(stream)
                    assert state is not None
                else:
                    self._stats.started += 1
                    self._after(stream, state, events)
                    await self._publish(events)
            return self._view(state)

    async def wait(self, saga: Saga[Any], id: str) -> SagaView:
        """Wait until instance ``id`` of ``saga`` has completed or been rejected."""
        stream = saga.stream(id)
        async with self._lock(stream):
            state = await self._state(stream)
            if state is None:
                raise ConfigurationError(f"no saga {stream!r} was started; start it first")
            if state.finished:
                return self._view(state)
            waiter: asyncio.Future[SagaView] = asyncio.get_running_loop().create_future()
            self._waiters.setdefault(stream, []).append(waiter)
        return await waiter

    async def view(self, saga: Saga[Any], id: str) -> SagaView | None:
        """Where instance ``id`` is, or None if it never started."""
        state = await self._state(saga.stream(id))
        return None if state is None else self._view(state)

    # -- running --------------------------------------------------------------------------

    async def run(self) -> None:
        """Resume unfinished instances, then relay, take replies and fire timers, until
        cancelled."""
        await self.resume()
        sub = await self.transport.subscribe(self.replies, group=self.replies, prefetch=256)
        try:
            async with asyncio.TaskGroup() as tasks:
                tasks.create_task(self._relay_forever())
                tasks.create_task(self._timers())
                tasks.create_task(self._take_replies(sub, tasks))
        finally:
            await sub.close()

    async def resume(self) -> int:
        """Load the unfinished instances of this runner's sagas from the store."""
        found = 0
        for stream, state in (await self.log.scan()).items():
            if state.finished or state.saga not in self._machines or stream in self._active:
                continue
            self._active[stream] = state
            found += 1
        self._stats.resumed += found
        self._changed.set()
        if found:
            log.info("%s: resumed %d unfinished sagas from the store", self.service, found)
        return found

    async def _append(self, state: SagaState, events: Sequence[SagaEvent]) -> None:
        """Append, with the commands marked in flight from before the append on: the relay
        stops at them until the fast path has published them (or failed to)."""
        sent = [e.message_id for e in events if isinstance(e, CommandSent)]
        self._inflight.update(sent)
        try:
            await self.log.append(state, events)
        except BaseException:
            self._inflight.difference_update(sent)
            raise

    async def _publish(self, events: Sequence[SagaEvent]) -> None:
        """The fast path: publish the commands just stored, at once; the relay skips them."""
        try:
            for event in events:
                if isinstance(event, CommandSent):
                    message = from_headers(event.headers, event.body)
                    await self.transport.publish(event.channel, message)
                    self._published.add(event.message_id)
                    self._inflight.discard(event.message_id)
                    self._stats.commands += 1
        finally:  # a failed publish is the relay's to do
            self._inflight.difference_update(
                e.message_id for e in events if isinstance(e, CommandSent)
            )

    async def relay(self) -> int:
        """Publish the commands recorded after the checkpoint that this process has not
        published yet (all of them after a restart); how many events were read."""
        after = await self.store.checkpoint(self.checkpoint)
        records = await self.store.read_all(after, 500)
        messages, end = [], after
        for record in records:
            await self._adopt(record)
            if record.type == CommandSent.type_name:
                sent = msgspec.json.decode(record.data, type=CommandSent)
                if sent.message_id in self._inflight:
                    break  # the fast path is publishing it: settle up to here only
                if sent.message_id in self._published:
                    self._published.discard(sent.message_id)
                else:
                    messages.append((sent.channel, from_headers(sent.headers, sent.body)))
            end = record.position
        if messages:
            async with asyncio.TaskGroup() as publishing:
                for channel, message in messages:
                    publishing.create_task(self.transport.publish(channel, message))
            self._stats.commands += len(messages)
        if end > after:
            await self.store.commit_projection(self.checkpoint, after, end, ())
        return len(records) if end == (records[-1].position if records else after) else 0

    async def _adopt(self, record: RecordedEvent) -> None:
        """Take on an unfinished saga the start-up scan could not see yet (a store may show
        the newest events late, as PostgreSQL's does while older transactions are open)."""
        stream = record.stream
        if record.type in _ENDS:
            self._ended.discard(stream)
            return
        if stream in self._active or stream in self._ended or not stream.startswith(PREFIX):
            return
        if stream.split(":")[1] in self._machines:
            async with self._lock(stream):
                state = await self._state(stream)
            if state is not None and state.finished:
                self._ended.add(stream)  # until its end event passes by
                self._locks.pop(stream, None)
            self._changed.set()

    async def _relay_forever(self) -> None:
        failed = 0
        while True:
            try:
                done = await self.relay()
            except SeawallError as exc:
                failed += 1
                delay = min(5.0, 0.05 * 2**failed)
                log.warning("%s saga relay: %s; trying again in %.1f s", self.service, exc, delay)
                await self.clock.sleep(delay)
                continue
            failed = 0
            if done < 500:
                await self.clock.sleep(self._poll)

    async def _take_replies(self, sub: Any, tasks: asyncio.TaskGroup) -> None:
        async for delivery in sub:
            await self._limit.acquire()
            tasks.create_task(self._reply(sub, delivery))

    async def _reply(self, sub: Any, delivery: Any) -> None:
        try:
            await self.on_reply(delivery.message)
        except SeawallError as exc:
            log.warning("%s: reply %s not taken: %s", self.service, delivery.message.id, exc)
            await sub.nack(delivery, delay=0.1)
        else:
            await sub.ack(delivery)
        finally:
            self._limit.release()

    async def on_reply(self, reply: Message) -> bool:
        """Take ``reply`` (for tests and custom transports); whether it changed anything."""
        self._stats.replies += 1
        stream = reply.correlationid or ""
        saga = stream.split(":")[1] if stream.count(":") >= 2 else ""
        if saga not in self._machines:
            self._stats.ignored += 1
            log.warning("%s: reply %s is for no saga of mine (%r)", self.service, reply.id, stream)
            return False
        now = self.clock.time()
        changed = await self._decide(stream, lambda m, s: m.on_reply(s, reply, now))
        if not changed:
            self._stats.ignored += 1
        return changed

    async def _timers(self) -> None:
        while True:
            self._changed.clear()  # set again by any change while this round looks
            now = self.clock.time()
            due: list[float] = []
            for stream, state in list(self._active.items()):
                when = self._machines[state.saga].due(state)
                if when is not None and when <= now:
                    await self._decide(stream, _at(now))
                    when = self._machines[state.saga].due(state)
                if when is not None:
                    due.append(when)
            self._wake_at = min(due, default=float("inf"))
            await wait_until(self.clock, self._changed, min(due, default=None))

    # -- deciding -------------------------------------------------------------------------

    async def _decide(self, stream: str, decide: Decide) -> bool:
        """Let the machine decide for ``stream`` and append; False if nothing happened."""
        for _ in range(3):
            async with self._lock(stream):
                state = await self._state(stream)
                if state is None or state.finished:
                    return False
                events = decide(self._machine(state.saga), state)
                try:
                    await self._append(state, events)
                except ConcurrencyError:
                    self._stats.conflicts += 1
                    self._active.pop(stream, None)
                    continue
                except BaseException:
                    self._active.pop(stream, None)  # the cached state ran ahead of the store
                    raise
                if events:
                    self._after(stream, state, events)
                    await self._publish(events)
                return bool(events)
        raise EventStoreError(
            f"saga {stream!r} keeps changing under this runner; is another process running it?"
        )

    def _after(self, stream: str, state: SagaState, events: Sequence[SagaEvent]) -> None:
        """Events of ``stream`` were stored: wake the relay and timers, settle waiters."""
        if self._on_stored is not None:
            self._on_stored(state, events)
        if not state.finished:
            self._active[stream] = state
            when = self._machine(state.saga).due(state)
            if when is not None and when < self._wake_at:
                self._changed.set()  # the timers wait for a later time: look again
            return
        self._active.pop(stream, None)
        self._locks.pop(stream, None)
        self._ended.add(stream)  # the relay has yet to pass its end event
        if state.status == "completed":
            self._stats.completed += 1
        else:
            self._stats.rejected += 1
        view = self._view(state)
        for waiter in self._waiters.pop(stream, []):
            if not waiter.done():
                waiter.set_result(view)

    async def _state(self, stream: str) -> SagaState | None:
        state = self._active.get(stream)
        if state is None:
            state = await self.log.load(stream)
            if state is not None and not state.finished:
                self._active[stream] = state
        return state

    def _lock(self, stream: str) -> asyncio.Lock:
        lock = self._locks.get(stream)
        if lock is None:
            lock = self._locks[stream] = asyncio.Lock()
        return lock

    def _machine(self, name: str) -> SagaMachine[Any]:
        machine = self._machines.get(name)
        if machine is None:
            raise ConfigurationError(
                f"saga {name!r} is not one this runner runs ({sorted(self._machines)}); "
                "pass it to SagaRunner(...)"
            )
        return machine

    def _view(self, state: SagaState) -> SagaView:
        return SagaView.of(state, now=self.clock.time(), stuck_after=STUCK_AFTER)


def _at(now: float) -> Decide:
    """The decision "the clock reached ``now``"."""
    return lambda machine, state: machine.on_time(state, now)
