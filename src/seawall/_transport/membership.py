"""The asyncio side of partition ownership: what a broker supplies, and one loop.

:class:`~seawall._transport.ownership.Ownership` decides who reads what; this
module carries its decisions out. A broker adapter supplies two small parts:

* a :class:`LeaseStore`, leases kept by the broker's own means (a NATS KV
  bucket with compare-and-set on revisions; Redis keys and scripts; RabbitMQ
  announcements on a fanout exchange). Every call is one bounded round trip
  at most and raises :class:`~seawall.TransportError` when the broker fails;
* a :class:`Reader`, the subscription's reading hooks: start and stop reading
  a partition, and say whether it is still ``busy`` with one (holds entries
  of it, or sent a read that may still bring some).

:class:`Member` drives the machine against them. :meth:`Member.join` runs
one round before subscribe returns, so a member alone owns every partition
at once. :meth:`Member.start` runs the loop in a task scope of the member's
own: renew, decide, act, then wait for the next due time or an early wake
(the store saw the members or a lease change, or the reader settled an entry
of a partition being handed over: :meth:`Member.wake`). :meth:`Member.stop`
ends it (a broken link: the leases run out), :meth:`Member.leave` gives every
lease and the membership up at once (a close).

Time is read from an injectable :class:`~seawall._clock.Clock`; nothing here
sleeps on its own. The test of the protocol (``tests/unit/transport/
test_ownership.py``) drives :meth:`Member.step` with an in-memory store and
a virtual clock, without an event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

from .._clock import Clock, wait_until
from .._exceptions import TransportError
from .._tasks import TaskScope
from .ownership import (
    Action,
    Fence,
    GiveUp,
    Ownership,
    Read,
    Refresh,
    Renew,
    Stop,
    Take,
    Wait,
)

__all__ = ["Broke", "Heartbeat", "LeaseStore", "Member", "Reader"]

log = logging.getLogger("seawall.transports")


@dataclass(frozen=True, slots=True)
class Heartbeat:
    """What a renewal learnt: the live members, and the leases that were lost."""

    members: frozenset[str]
    lost: frozenset[int]


class LeaseStore(Protocol):
    """Where one member's leases live, by a broker's own means (see the module docstring)."""

    async def renew(self, held: Mapping[int, int]) -> Heartbeat:
        """Renew this member's lease and the partition leases ``held`` (partition ->
        epoch); a lease whose epoch is no longer the store's is lost."""
        ...

    async def members(self) -> frozenset[str]:
        """The live members, as the store knows them now (no renewal)."""
        ...

    async def acquire(self, partition: int) -> int | None:
        """Take the partition's lease if no one holds it: its new fencing epoch (higher
        than every earlier one of that partition), or None when it is held."""
        ...

    async def release(self, partition: int, epoch: int) -> None:
        """Let the lease of ``epoch`` go, if this member still holds it."""
        ...

    async def leave(self, held: Mapping[int, int]) -> None:
        """Let every lease in ``held`` and this member's own lease go."""
        ...

    async def changed(self) -> bool:
        """Wait for the members or a lease to change; whether they did. May return
        False after a short while (a quarter second, say) so a stopping member is
        never held up; a store that learns nothing by itself waits for ever."""
        ...


class Reader(Protocol):
    """A subscription's reading hooks, as partition ownership needs them."""

    async def start_reading(self, partition: int, epoch: int) -> None:
        """Read ``partition`` (under the lease of ``epoch``)."""
        ...

    async def stop_reading(self, partition: int) -> None:
        """Send no more reads of ``partition``; entries held stay held until settled."""
        ...

    def busy(self, partition: int) -> bool:
        """Whether entries of ``partition`` are held, or a read already sent may still
        bring some."""
        ...


Broke = Callable[[Exception], Awaitable[None]]
"""Called when the member's loop fails (the store failed): the subscription ends."""


class Member:
    """Drives one member's :class:`Ownership` against its store and reader."""

    def __init__(
        self,
        ownership: Ownership,
        store: LeaseStore,
        reader: Reader,
        clock: Clock,
        *,
        scope: str = "",
        grace: float = 2.0,
    ) -> None:
        self.ownership = ownership
        self.scope = scope
        """What the partitions are of (``<channel>/<group>``), named in every :class:`Fence`."""
        self.store = store
        self.reader = reader
        self.clock = clock
        self.grace = grace
        """Seconds a stopping loop may take to finish its round trip before it is cancelled."""
        self._changed = asyncio.Event()
        self._stopped = False
        self._scope: contextlib.AsyncExitStack | None = None
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def me(self) -> str:
        return self.ownership.me

    def fence(self, partition: int) -> Fence | None:
        """The fence a write that depends on owning ``partition`` carries, or None."""
        return self.ownership.fence(partition, self.scope)

    async def join(self) -> None:
        """One round: renew, then take and read what this member should own and is free."""
        while await self.step() is None:
            pass

    async def start(self, broke: Broke) -> asyncio.Task[None]:
        """Run the loop (and the store's change feed) until :meth:`stop`; the loop's task."""
        self._scope = contextlib.AsyncExitStack()
        scope = await self._scope.enter_async_context(TaskScope())
        self._tasks = [
            scope.create_task(self._guarded(self._loop, broke)),
            scope.create_task(self._guarded(self._follow, broke)),
        ]
        return self._tasks[0]

    def wake(self) -> None:
        """Something changed (members, a lease, a settled entry): start a round now."""
        self._changed.set()

    async def step(self) -> Wait | None:
        """Take the next action; the :class:`Wait` that ends a round, else None."""
        action = self.ownership.next(self.clock.time(), self.reader.busy)
        if isinstance(action, Wait):
            return action
        if isinstance(action, Renew | Refresh):
            self._changed.clear()  # a change after this point starts another round
        await self._act(action)
        return None

    async def _act(self, action: Action) -> None:
        match action:
            case Renew(held):
                at = self.clock.time()
                beat = await self.store.renew(held)
                self.ownership.renewed(at, beat.members, beat.lost)
            case Refresh():
                self.ownership.heard(await self.store.members())
            case Take(partition):
                self.ownership.taken(partition, await self.store.acquire(partition))
            case Read(partition, epoch):
                await self.reader.start_reading(partition, epoch)
            case Stop(partition):
                await self.reader.stop_reading(partition)
            case GiveUp(partition, epoch):
                await self.store.release(partition, epoch)

    async def _loop(self) -> None:
        while not self._stopped:
            wait = await self.step()
            if wait is not None and not self._stopped:
                await wait_until(self.clock, self._changed, wait.until)

    async def _follow(self) -> None:
        while not self._stopped:
            if await self.store.changed():
                self.wake()

    async def _guarded(self, work: Callable[[], Awaitable[None]], broke: Broke) -> None:
        # ``work`` is called here, not by the caller: a task cancelled before it starts
        # then leaves no coroutine behind that was never awaited
        try:
            await work()
        except Exception as exc:
            if not self._stopped:
                log.warning(
                    "partition ownership of %s failed (%r); subscription ends", self.me, exc
                )
                self._stopped = True
                await broke(exc)

    def stop(self) -> None:
        """Ask the loop to end; it does once its round trip under way is done."""
        self._stopped = True
        self.wake()
        for task in self._tasks[1:]:
            task.cancel()  # the change feed has nothing to finish

    async def stopped(self) -> None:
        """Stop, and wait for the loop to end: ``grace`` seconds at most, then it is
        cancelled. From inside the loop (a failure ending the subscription) it only asks."""
        self.stop()
        if self._scope is None or asyncio.current_task() in self._tasks:
            return
        await asyncio.wait(self._tasks, timeout=self.grace)
        scope, self._scope = self._scope, None
        await scope.aclose()

    async def leave(self) -> None:
        """Stop, and give every lease and the membership up at once (best effort)."""
        await self.stopped()
        held = self.ownership.held()
        self.ownership.left()
        with contextlib.suppress(TransportError):
            await self.store.leave(held)
