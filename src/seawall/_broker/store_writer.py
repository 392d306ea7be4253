"""Group commit for the store: one writer thread, futures resolved on the event loop.

The broker calls :class:`StoreWriter` from the event loop. Every call is
checked at once against a :class:`~seawall._broker.store.Ledger` (a bad call raises
at its call site) and queued; one dedicated thread owns the writing SQLite
connection, takes everything queued as one :class:`~seawall._broker.store.WriteBatch`,
writes it in one transaction and resolves the batch's futures with a single
``loop.call_soon_threadsafe``. Reads go through a second, read-only
connection on the loop's thread: in WAL mode readers see only committed data
and never block the writer.

What an acknowledgement (a resolved future) means under each policy:

``always``
    The commit that holds the record has been fsynced (``synchronous=FULL``).
    The writer commits whatever is queued as soon as it is free, so appends
    arriving during one fsync share the next (natural group commit).
``batch`` (default)
    The same promise; under concurrent load the writer lingers up to
    ``window`` seconds (default 2 ms) after a group's first record, or until
    ``group_size`` records, to share one fsync among more records. It lingers
    only while the previous group held more than one record (others are
    writing at the same time, as PostgreSQL's ``commit_siblings`` asks): a
    lone write, such as a request waiting for its reply, is committed at once.
    And it stops lingering as soon as as many records are queued as the
    previous group held: writers that wait for each acknowledgement before
    writing again are then all back, and waiting longer would only add the
    window to every commit (4 such publishers were acknowledged half as fast
    as under ``always`` before). Nor does it linger longer than the last
    fsynced commit took: committing now, and once more for the late ones,
    acknowledges them no later than waiting longer would. So a group is never
    held for company that is not coming, nor for longer than company is
    worth, and ``batch`` is never slower than ``always``.
An append may say ``fsync=False`` (a request on a channel declared with
``sync_requests=False``): a group of only such appends is committed at once
with ``synchronous=NORMAL``, no fsync (the WAL reaches the disk with the next
fsynced commit or checkpoint); a group with any other record is fsynced whole.

``none``
    The future still resolves once committed, but the caller acknowledges
    without waiting for it (:attr:`StoreWriter.acks_before_commit`; the broker
    waits only to show the record to consumers). Lost if the process dies:
    what is queued and not yet committed (normally under ``window`` plus one
    commit). Lost on power loss: also commits since the
    last checkpoint (``synchronous=NORMAL`` fsyncs only at checkpoints,
    about every 16 MB), but the file is never left damaged. Nobody waits for
    a commit here, so every group lingers for ``window``.

Positions and trims are lazy: they coalesce and ride with the next commit, or
are committed alone after ``lazy_window`` seconds. Queueing one wakes the
writer thread only if it sleeps without a deadline: for ``lazy_window`` after
each commit it sleeps with one, so the acks of a request/reply exchange do not
wake it (each wake-up takes the GIL from the event loop in the middle of a
round trip) and their positions ride with the next request's commit. A write that fails (disk
full, I/O error) fails its group's futures and breaks the writer: every later
call raises :class:`~seawall.StorageError` until the broker restarts, since a
store that failed an fsync cannot be trusted to hold what it acknowledged.

Back-pressure: at most ``max_pending`` records wait to be committed; callers
``await writer.room()`` before appending, and an append beyond the bound raises.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any, NoReturn, Self

from .._exceptions import StorageError, TransportClosed
from .._fsync import SyncPolicy, parse_sync
from .store import (
    ChannelLayout,
    Entry,
    Ledger,
    Recovered,
    Scheduled,
    SeenId,
    Store,
    StoreReader,
    WriteBatch,
    open_reader,
)

__all__ = ["StoreWriter", "Waiter"]

Waiter = asyncio.Future[None] | Callable[[BaseException | None], None]
"""Who learns that a write was committed: a future, or a callback given None or the error."""
_Held = tuple[str, int, int, float, bytes, Callable[[], None] | None, bool, Waiter, str | None]
"""An append held on the loop (:meth:`StoreWriter.hold`): append_calling's arguments."""


class StoreWriter:
    """The asyncio face of a :class:`~seawall._broker.store.Store`; use with ``async with``."""

    def __init__(
        self,
        path: Path,
        *,
        policy: SyncPolicy = "batch",
        window: float = 0.002,
        group_size: int = 2048,
        max_pending: int = 65_536,
        lazy_window: float = 0.05,
    ) -> None:
        self.path = path
        self.policy: SyncPolicy = parse_sync(policy, where=f"the broker store at {path}")
        self._window = window if policy != "always" else 0.0
        self._group_size = group_size
        self._max_pending = max_pending
        self._lazy_window = lazy_window
        # shared with the writer thread, under _cond
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._batch = WriteBatch()
        self._futures: list[Waiter] = []
        """Who waits for the queued writes: a future, or a callback given the error or None."""
        self._thens: list[Callable[[], None]] = []
        """Callbacks of the queued writes, run on the loop as soon as they are committed."""
        # the loop's side: appends held by hold() until release()
        self._holding = False
        self._held: list[_Held] = []
        self._held_positions: dict[tuple[str, str, int], int] = {}
        self._since = 0.0
        self._last = 0.0
        """When the writer last committed (monotonic)."""
        self._sleeping = False
        """Whether the writer waits without a deadline: a lazy write must wake it."""
        self._linger = policy == "none"
        """Whether to wait for company: under ``batch`` while the last group had some."""
        self._company = group_size
        """How many records end a linger at once: the last group's size under ``batch``
        (its writers are back once that many are queued again), ``group_size`` otherwise."""
        self._commit_seconds = self._window
        """How long the last fsynced commit took: the longest a linger is worth under
        ``batch`` (writer thread only)."""
        self._closing = False
        self._failure: BaseException | None = None
        """Set when the thread stops: later writes fail at once instead of waiting forever."""
        # the loop's side
        self._pending = 0
        self._room = asyncio.Event()
        self._room.set()
        self._blocked = True
        """Set while a write must not go ahead (closed, failed, full): one check on the hot path."""
        self.acks_before_commit = policy == "none"
        """Whether callers acknowledge a write before its future resolves (policy none)."""
        self._error: BaseException | None = None
        self._state = "new"
        self._ledger = Ledger(Recovered({}, {}, {}, []))
        self._reader: StoreReader | None = None
        # bound to the running loop by __aenter__
        self._loop: asyncio.AbstractEventLoop
        self._stopped: asyncio.Future[None]
        self.recovered = Recovered({}, {}, {}, [])
        """What the store held when it opened; read it once at start."""

    # -- lifecycle ---------------------------------------------------------
    async def __aenter__(self) -> Self:
        loop = self._loop = asyncio.get_running_loop()
        started: asyncio.Future[Recovered] = loop.create_future()
        self._stopped = loop.create_future()
        thread = threading.Thread(
            target=self._run, args=(loop, started), name=f"seawall-store:{self.path}", daemon=True
        )
        thread.start()
        self.recovered = await started
        self._ledger = Ledger(self.recovered)
        self._reader = open_reader(self.path)
        self._state = "open"
        self._blocked = False
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Commit everything queued, stop the thread and close the store."""
        if self._state != "open":
            return
        if self._held or self._held_positions:
            self._queue_held()
        self._holding = False
        self._state = "closed"
        self._blocked = True
        self._room.set()  # waiters for room find the writer closed
        with self._cond:
            self._closing = True
            self._cond.notify()
        assert self._reader is not None
        try:
            await asyncio.shield(self._stopped)
        finally:
            self._reader.close()

    # -- writes --------------------------------------------------------------
    @property
    def full(self) -> bool:
        """Whether ``max_pending`` records wait: ``await room()`` before writing."""
        return self._pending >= self._max_pending

    async def room(self) -> None:
        """Return once fewer than ``max_pending`` records wait; write right after."""
        while self._pending >= self._max_pending and not self._stopping():
            await self._room.wait()

    def declare(self, name: str, layout: ChannelLayout) -> asyncio.Future[None]:
        """Store a channel's layout (new or changed)."""
        self._usable()
        self._ledger.declare(name)
        return self._enqueue(lambda batch: batch.declare(name, layout))

    def append(
        self,
        channel: str,
        partition: int,
        offset: int,
        time: float,
        body: bytes,
        then: Callable[[], None] | None = None,
        fsync: bool = True,
        dedupe: str | None = None,
    ) -> asyncio.Future[None]:
        """Append an entry at ``offset`` (the log's end); resolves once durable per policy.

        ``then`` is called on the loop once the entry is committed, in the callback that
        learns it (a loop turn before anyone awaiting the future runs); never on failure.
        ``fsync=False``: the entry needs no fsync (a request whose caller waits with a
        deadline, on a channel that does not sync requests); a group of only such
        entries is committed at once and without one. ``dedupe``: the publish's key in
        the broker's duplicate window, stored in the same transaction.
        """
        future = self._loop.create_future()
        self.append_calling(channel, partition, offset, time, body, then, fsync, future, dedupe)
        return future

    def append_calling(
        self,
        channel: str,
        partition: int,
        offset: int,
        time: float,
        body: bytes,
        then: Callable[[], None] | None,
        fsync: bool,
        done: Waiter,
        dedupe: str | None = None,
    ) -> None:
        """:meth:`append`, telling ``done`` instead of a future of its own: a future, or a
        callback called on the loop with None once committed (after ``then``) or with the
        error of a failed write. The broker server's publishes take no future and no task."""
        # The broker's hot path: _enqueue's steps inlined, one method call each costs.
        if self._blocked:
            self._usable()
        self._ledger.append(channel, partition, offset)
        if self._holding:  # queued under the lock at release, with the others held
            self._held.append((channel, partition, offset, time, body, then, fsync, done, dedupe))
            self._pending += 1
            if self._pending >= self._max_pending:
                self._block()
            return
        with self._lock:
            if self._failure is not None:
                self._refuse()
            batch = self._batch
            batch.append(channel, partition, offset, time, body, dedupe)
            if not fsync:
                batch.unsynced += 1
            self._futures.append(done)
            if then is not None:
                self._thens.append(then)
            records = batch.records
            if (
                records == 1
                or records == self._company
                or records == self._group_size
                or not fsync  # it waits for nobody, nor for company already lingering
            ):
                self._wake(batch)
        self._pending += 1
        if self._pending >= self._max_pending:
            self._block()

    def hold(self) -> None:
        """Gather appends on the loop until :meth:`release`: the broker server holds the
        appends of one socket read, to queue them with one lock and one wake-up of the
        writer instead of one each. Any other write releases them first, so the writer
        sees every write in the order made."""
        self._holding = True

    def release(self) -> None:
        """Queue the appends held since :meth:`hold`, and stop holding."""
        self._holding = False
        if self._held or self._held_positions:
            self._queue_held()

    def _queue_held(self) -> None:
        held, self._held = self._held, []
        positions, self._held_positions = self._held_positions, {}
        with self._lock:
            failure = self._failure
            if failure is None:
                batch, futures, thens = self._batch, self._futures, self._thens
                if held:
                    if not batch.records:
                        self._since = time.monotonic()
                    self._cond.notify()
                elif not batch:  # positions only: lazy, as set_position's
                    self._since = time.monotonic()
                    if self._sleeping:
                        self._cond.notify()
                append = batch.append
                for channel, partition, offset, at, body, then, fsync, done, dedupe in held:
                    append(channel, partition, offset, at, body, dedupe)
                    if not fsync:
                        batch.unsynced += 1
                    futures.append(done)
                    if then is not None:
                        thens.append(then)
                batch.positions.update(positions)
        if failure is not None:  # the writer stopped meanwhile: these fail as a group would
            self._committed(
                [done for *_, done, _ in held],
                [],
                len(held),
                StorageError(f"store {self.path} stopped: {failure}"),
            )

    def schedule(
        self,
        id: str,
        channel: str,
        due: float,
        body: bytes,
        time: float = 0.0,
        dedupe: str | None = None,
    ) -> asyncio.Future[None]:
        """Keep a message to append to ``channel`` once ``due``; ``dedupe``: its key in
        the duplicate window, noted at ``time``."""
        self._usable()
        self._ledger.schedule(id, channel)
        item = Scheduled(id, channel, due, body)

        def add(batch: WriteBatch) -> None:
            batch.schedule(item)
            if dedupe is not None:
                batch.ids.append(SeenId(channel, dedupe, time))

        return self._enqueue(add)

    def move_due(
        self,
        id: str,
        channel: str,
        partition: int,
        offset: int,
        time: float,
        body: bytes,
        then: Callable[[], None] | None = None,
    ) -> asyncio.Future[None]:
        """Append scheduled message ``id`` at ``offset`` and forget it, atomically
        (``then`` as for :meth:`append`)."""
        self._usable()
        self._ledger.move_due(id, channel, partition, offset)
        return self._enqueue(
            lambda batch: batch.move_due(id, channel, partition, offset, time, body), then
        )

    def delete_channel(self, name: str) -> asyncio.Future[None]:
        """Delete a channel and everything it holds (see :meth:`WriteBatch.delete_channel`)."""
        self._usable()
        self._ledger.delete_channel(name)
        return self._enqueue(lambda batch: batch.delete_channel(name))

    def delete_group(self, channel: str, group: str) -> asyncio.Future[None]:
        """Delete a group's committed offsets."""
        self._usable()
        return self._enqueue(lambda batch: batch.delete_group(channel, group))

    def set_position(self, channel: str, group: str, partition: int, committed: int) -> None:
        """Record a group's committed offset; written lazily, latest value wins."""
        # Once per settlement on the broker's hot path: _enqueue_lazy's steps inlined.
        if self._blocked:
            self._usable()
        self._ledger.position(channel)
        if self._holding:  # the latest wins: kept on the loop until release
            self._held_positions[(channel, group, partition)] = committed
            return
        with self._lock:
            if self._failure is not None:
                self._refuse()
            batch = self._batch
            if not batch:
                self._since = time.monotonic()
                if self._sleeping:  # else it wakes by lazy_window after its last commit
                    self._cond.notify()
            batch.set_position(channel, group, partition, committed)

    def trim(self, channel: str, partition: int, below: int) -> None:
        """Drop a log's entries below ``below``; written lazily, highest value wins."""
        self._usable()
        self._ledger.trim(channel, partition, below)
        self._enqueue_lazy(lambda batch: batch.trim(channel, partition, below))

    def forget_ids(self, before: float) -> None:
        """Forget the duplicate window's ids older than ``before``; written lazily."""
        self._usable()
        self._enqueue_lazy(lambda batch: batch.forget_ids(before))

    def _stopping(self) -> bool:
        return self._state != "open" or self._error is not None

    def _usable(self) -> None:
        if self._state != "open":
            raise TransportClosed(f"store writer for {self.path} is {self._state}; open it first")
        if self._error is not None:
            raise StorageError(
                f"store {self.path} failed earlier ({self._error}); nothing more is "
                "written: restart the broker"
            ) from self._error
        if self._pending >= self._max_pending:
            raise StorageError(
                f"store {self.path} has {self._pending} writes queued (max_pending); "
                "await StoreWriter.room() before writing"
            )

    def _enqueue(
        self, add: Callable[[WriteBatch], None], then: Callable[[], None] | None = None
    ) -> asyncio.Future[None]:
        if self._held or self._held_positions:
            self._queue_held()
        future = self._loop.create_future()
        with self._lock:
            if self._failure is not None:
                self._refuse()
            add(self._batch)
            self._futures.append(future)
            if then is not None:
                self._thens.append(then)
            self._wake(self._batch)
        self._pending += 1
        if self._pending >= self._max_pending:
            self._block()
        return future

    def _wake(self, batch: WriteBatch) -> None:
        """Under the lock: a group starts (note when) or fills up; the writer may wait for it."""
        if batch.records == 1:
            self._since = time.monotonic()
        self._cond.notify()

    def _block(self) -> None:
        """The queue is full: writes raise until the writer catches up."""
        self._room.clear()
        self._blocked = True

    def _refuse(self) -> NoReturn:
        raise StorageError(f"store {self.path} stopped: {self._failure}") from self._failure

    def _enqueue_lazy(self, add: Callable[[WriteBatch], None]) -> None:
        if self._held or self._held_positions:
            self._queue_held()
        with self._lock:
            if self._failure is not None:
                self._refuse()
            if not self._batch:
                self._since = time.monotonic()
                if self._sleeping:  # else it wakes by lazy_window after its last commit
                    self._cond.notify()
            add(self._batch)

    def _committed(
        self,
        futures: list[Waiter],
        thens: list[Callable[[], None]],
        records: int,
        error: BaseException | None,
    ) -> None:
        """On the loop: a group was committed (or failed with ``error``)."""
        self._pending -= records
        if error is not None:
            self._error = error
        else:
            for then in thens:
                then()
        for future in futures:
            if not isinstance(future, asyncio.Future):  # a callback
                future(error)
            elif not future.done():
                if error is None:
                    future.set_result(None)
                else:
                    future.set_exception(error)
        stopping = self._stopping()
        self._blocked = stopping or self._pending >= self._max_pending
        if stopping or self._pending < self._max_pending:
            self._room.set()  # a failed writer wakes its waiters too: their next write raises

    # -- reads ---------------------------------------------------------------
    def read(self, channel: str, partition: int, start: int, limit: int) -> list[Entry]:
        """Up to ``limit`` committed entries of a log from offset ``start``."""
        return self._open_reader().read(channel, partition, start, limit)

    def offset_at_time(self, channel: str, partition: int, t: float) -> int:
        """The first committed offset with a time >= ``t``, or the log's end."""
        return self._open_reader().offset_at_time(channel, partition, t)

    def offset_keeping_bytes(self, channel: str, partition: int, max_bytes: int) -> int:
        """The smallest offset whose entries to the end total <= ``max_bytes``."""
        return self._open_reader().offset_keeping_bytes(channel, partition, max_bytes)

    def _open_reader(self) -> StoreReader:
        if self._reader is None or self._state != "open":
            raise TransportClosed(f"store writer for {self.path} is {self._state}; open it first")
        return self._reader

    # -- the writer thread -----------------------------------------------------
    def _run(self, loop: asyncio.AbstractEventLoop, started: asyncio.Future[Recovered]) -> None:
        try:
            store = Store.open(self.path, policy=self.policy)
            recovered = store.recover(ids=True)
        except BaseException as exc:
            _call(loop, _settle, started, None, exc)
            _call(loop, _settle, self._stopped, None, None)
            return
        _call(loop, _settle, started, recovered, None)
        failure: BaseException | None = None
        try:
            self._serve(loop, store)
        except Exception as exc:  # already handed to the futures of its group
            failure = exc
        finally:
            _call(loop, _settle, self._stopped, None, self._shut(loop, store, failure))

    def _serve(self, loop: asyncio.AbstractEventLoop, store: Store) -> None:
        while (taken := self._take()) is not None:
            batch, futures, thens = taken
            started = time.monotonic()
            try:
                store.write(batch)
            except Exception as exc:
                _call(loop, self._committed, futures, [], batch.records, exc)
                raise
            if batch.records and batch.fsync:
                self._commit_seconds = time.monotonic() - started
            _call(loop, self._committed, futures, thens, batch.records, None)
            store.checkpoint_if_due()

    def _take(
        self,
    ) -> tuple[WriteBatch, list[Waiter], list[Callable[[], None]]] | None:
        """Wait until the queued batch is due; take it (None once closing and empty)."""
        with self._cond:
            while (due := self._due()) != 0.0:
                self._sleeping = due is None
                self._cond.wait(None if due is None else max(0.0, due - time.monotonic()))
            self._sleeping = False
            self._last = time.monotonic()
            batch, futures, thens = self._batch, self._futures, self._thens
            self._batch, self._futures, self._thens = WriteBatch(), [], []
            self._linger = batch.records > 1 or self.acks_before_commit
            if not self.acks_before_commit:
                self._company = batch.records
        return (batch, futures, thens) if batch or not self._closing else None

    def _due(self) -> float | None:
        """When the queued batch should be written: 0.0 now, None when nothing is queued
        (or when to look again, for ``lazy_window`` after a commit)."""
        batch = self._batch
        if self._closing or batch.records >= self._group_size:
            return 0.0
        if batch.records:
            if not self._linger or batch.records >= self._company or batch.unsynced:
                return 0.0  # a record that needs no fsync (a request) ends a linger too
            linger = self._window if self.acks_before_commit else self._commit_seconds
            due = self._since + min(self._window, linger)
        elif batch:
            due = self._since + self._lazy_window
        else:  # nothing queued: wait with a deadline a while, so lazy writes need not wake us
            wake = self._last + self._lazy_window
            return wake if wake > time.monotonic() else None
        return 0.0 if due <= time.monotonic() else due

    def _shut(
        self, loop: asyncio.AbstractEventLoop, store: Store, failure: BaseException | None
    ) -> BaseException | None:
        """Refuse further writes, fail what is still queued, close the store.

        Returns the error of closing the store, if any.
        """
        with self._cond:
            self._failure = failure or StorageError(f"store {self.path} is closed")
            futures, self._futures, self._thens = self._futures, [], []
            records, self._batch = self._batch.records, WriteBatch()
        if futures or records:
            _call(loop, self._committed, futures, [], records, self._failure)
        try:
            store.close()
        except StorageError as exc:
            return exc
        return None


def _call(loop: asyncio.AbstractEventLoop, callback: Callable[..., None], *args: Any) -> None:
    """Run ``callback`` on the loop's thread; a closed loop has nobody left to tell."""
    with contextlib.suppress(RuntimeError):
        loop.call_soon_threadsafe(callback, *args)


def _settle(future: asyncio.Future[Any] | None, result: Any, error: BaseException | None) -> None:
    if future is None or future.done():
        return
    if error is None:
        future.set_result(result)
    else:
        future.set_exception(error)
