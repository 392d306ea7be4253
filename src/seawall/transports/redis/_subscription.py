"""Reading a Redis channel: credit-bounded reads, settling, retries and reclaiming.

The consuming half of :mod:`seawall.transports.redis` (whose docstring gives
the design); kept apart so each module stays small.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections import Counter, deque
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..._clock import timeout_at, wait_until
from ..._exceptions import ConnectionLost, TransportError
from ..._messages.envelope import Message
from ..._messages.ids import uuid7
from ..._transport import Delivery
from ..._transport.membership import Member
from ..._transport.ownership import Fence
from . import _idle
from ._entry import decode
from ._keys import PARKED, RedisChannel
from ._ownership import RedisLeases, member
from ._wire import command, round_trip, translated

if TYPE_CHECKING:
    from . import RedisTransport

__all__ = ["RedisSubscription"]

log = logging.getLogger("seawall.transports.redis")

_Token = tuple[int, bytes]  # (partition, entry id)
_ACK_LINGER = 0.01  # seconds an ack may wait for a read to ride with


@dataclass(slots=True)
class _Held:
    partition: int
    entry: bytes
    message: Message
    attempt: int
    touched: float


class RedisSubscription:
    """One member of a group on a Redis channel: a consumer of its own."""

    def __init__(
        self, transport: RedisTransport, channel: RedisChannel, group: str, prefetch: int
    ) -> None:
        self.transport = transport
        self.channel = channel
        self.group = group
        self.prefetch = prefetch
        self.consumer = uuid7()
        self.expiry: float | None = None
        """Seconds the group may go unused, if it expires (see :mod:`._idle`)."""
        self._new_expiry: float | None = None
        self.owned: dict[int, str] = {}  # partition -> stream key
        self._reading: set[int] = set()  # partitions the read in flight asks for
        self.held: Counter[int] = Counter()  # partition -> read and not settled
        self._group = channel.keys.group(group)
        self._ready: deque[_Held] = deque()
        self._unsettled: dict[_Token, _Held] = {}
        self._state = "open"  # open | closed | broken
        self._intake = True  # False once stop_intake was called: nothing more is taken
        self._rested = asyncio.Event()  # no refill under way (reading, claiming)
        self._rested.set()
        self._why = "the link to Redis broke"
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()  # no read under way
        self._idle.set()
        self._low = max(1, prefetch // 4)  # the least room worth a read while holding some
        self._keep_alive_at = math.inf  # when held entries next need their idle time reset
        self._due_at = 0.0  # when to look at the retry sets next
        self._reclaim_at = 0.0
        self._orphans: set[int] = set()  # partitions newly owned: claim others' entries now
        self._renew_at = 0.0 if channel.ephemeral else math.inf  # keys' time to live
        self._turn = 0  # which partitions a read too small for all of them starts at
        self._acked: dict[int, list[bytes]] = {}  # partition -> acked, XACK not yet sent
        self._acking: set[int] = set()  # partitions whose XACKs are on their way
        self._acked_at = 0.0  # when the oldest of them was acked
        self._flushing = False  # acks are being sent beside a blocking read
        self._leases: RedisLeases | None = None
        self._owner: Member | None = None
        self._task: asyncio.Task[None] | None = None  # the ownership loop's
        if channel.partitions > 1:
            self._leases = RedisLeases(self)
            self._owner = member(self, self._leases)

    async def start(self) -> None:
        await self._renew(self.transport.clock.time())  # a key made since is mortal too
        if self._owner is None:
            for lane in range(self.channel.lanes):
                await self.start_reading(lane, 0)
        else:
            await self._owner.join()
            self._task = await self._owner.start(self._broke)

    async def _broke(self, exc: Exception) -> None:
        """The partition ownership failed: the subscription breaks."""
        self._why = f"partition ownership failed ({exc})"
        await self._end("broken")

    # -- partitions (the reader's part in partition ownership) -----------------
    async def start_reading(self, partition: int, epoch: int) -> None:
        if self._state == "open":
            self.owned[partition] = self.channel.keys.stream(partition)
            if self._owner is not None:
                # a new lease: what its last owner left unsettled is claimed at once, before
                # any later entry is read (per-key order across a crash, no claim_idle wait)
                self._orphans.add(partition)
            self._due_at = self._reclaim_at = 0.0  # look for its retries and orphans now
            self._wake.set()

    async def stop_reading(self, partition: int) -> None:
        self.owned.pop(partition, None)
        self._orphans.discard(partition)

    def fence(self, partition: int) -> Fence | None:
        """The fence of a write that depends on owning ``partition`` (see
        :class:`~seawall.Fence`), or None on a channel of one partition."""
        return None if self._owner is None else self._owner.fence(partition)

    def busy(self, partition: int) -> bool:
        # a read already sent may still bring entries of it: not free before it returns;
        # nor before its acks are sent (the next owner claims what is pending at once)
        return (
            self.held[partition] > 0
            or partition in self._reading
            or partition in self._acked
            or partition in self._acking
        )

    # -- deliveries ------------------------------------------------------------
    def __aiter__(self) -> AsyncIterator[Delivery]:
        return self._deliveries()

    async def _deliveries(self) -> AsyncIterator[Delivery]:
        while True:
            if self._state == "broken":
                raise ConnectionLost(
                    f"stopped reading channel {self.channel.name!r} as group {self.group!r}: "
                    f"{self._why}; subscribe again"
                )
            if self._state == "closed" or not self._intake:
                return
            if self._ready and len(self._unsettled) < self.prefetch:
                held = self._ready.popleft()
                self._unsettled[(held.partition, held.entry)] = held
                yield Delivery(
                    message=held.message,
                    channel=self.channel.name,
                    partition=held.partition if self.channel.levels == 1 else 0,
                    attempt=held.attempt,
                    token=(held.partition, held.entry),
                )
                continue
            self._wake.clear()
            self._rested.clear()
            try:
                await self._refill()
            except ConnectionLost as exc:
                if self._state == "open":
                    self._why = str(exc)
                    await self._end("broken")
            finally:
                self._rested.set()

    async def _refill(self) -> None:
        """Claim due retries and orphans, or read new entries, as far as credit allows."""
        if not self._intake:
            return
        clock = self.transport.clock
        now = clock.time()
        await self._keep_alive(now)
        await self._renew(now)
        held = len(self._unsettled) + len(self._ready)
        credit = self.prefetch - held
        if credit <= 0 or not self.owned or (held and credit < self._low):
            # too little room for a read worth its round trip: wait for more settling
            acks_due = self._acked_at + _ACK_LINGER if self._acked else None
            if acks_due is not None and now >= acks_due:
                await self._send_acks()
                acks_due = None
            wake = (self._keep_alive_due(), acks_due, self._renew_due())
            await self._sleep(min(filter(None, wake), default=None))
            return
        if now >= self._reclaim_at and await self._reclaim(credit, now):
            return
        if now >= self._due_at and await self._take_due(credit, now):
            return
        if self._orphans:  # a partition taken meanwhile: its orphans go before any read
            self._reclaim_at = 0.0
            return
        due = min(self._due_at, self._reclaim_at, self._renew_at)
        await self._read(credit, max(0.001, min(self.transport.poll, due - now)))

    async def _sleep(self, until: float | None) -> None:
        await wait_until(self.transport.clock, self._wake, until or None)

    async def _read(self, credit: int, block: float) -> None:
        streams = list(self.owned.items())
        self._reading = set(self.owned)
        self._idle.clear()
        try:
            client = await self.transport.link()
            with translated(f"reading channel {self.channel.name!r}"):
                async with asyncio.timeout(block + self.transport.api_timeout):
                    if self.channel.levels > 1:
                        answer = await self._read_by_level(client, streams, credit, block)
                    else:
                        answer = await self._read_round_trip(
                            client, self._spread(streams, credit, block)
                        )
            partition_of = {key.encode(): p for p, key in streams}
            now = self.transport.clock.time()
            read = [
                self._held(partition_of[_bytes(key)], entry, fields, 1, now)
                for key, entries in answer or ()
                for entry, fields in entries
            ]
            if self._state != "open":  # closed meanwhile: never handed out, so not an attempt
                await self._give_back(read, 0.0, handed_out=False)
                return
            self._hold(read)
        finally:
            asked, self._reading = self._reading, set()
            self._idle.set()
            if self._owner is not None and not asked <= self.owned.keys():
                self._owner.wake()  # a partition being handed over may now be free

    def _spread(self, streams: list[tuple[int, str]], credit: int, block: float) -> list[Any]:
        """One read over the streams, credit shared among them."""
        if credit < len(streams):  # too little credit for one from each: take turns
            self._turn = (self._turn + 1) % len(streams)
            streams = (streams[self._turn :] + streams[: self._turn])[:credit]
        return self._args(streams, max(1, credit // len(streams)), block)

    def _args(self, streams: list[tuple[int, str]], count: int, block: float | None) -> list[Any]:
        args: list[Any] = ["XREADGROUP", "GROUP", self._group, self.consumer, "COUNT", count]
        if block is not None:
            args += ["BLOCK", max(1, int(block * 1000))]
        return [*args, "STREAMS", *(key for _, key in streams), *[">"] * len(streams)]

    async def _read_by_level(
        self, client: Any, streams: list[tuple[int, str]], credit: int, block: float
    ) -> list[Any]:
        """Entries of the highest levels first; if none has any, wait on the highest ones
        that credit allows (a lower level's entry then waits at most one ``block``)."""
        got: list[Any] = []
        for lane in sorted(streams, reverse=True):
            left = credit - sum(len(entries) for _, entries in got)
            if left <= 0:
                break
            got += await self._read_round_trip(client, self._args([lane], left, None)) or []
        if got:
            return got
        watched = sorted(streams, reverse=True)[:credit]
        return await self._read_round_trip(client, self._args(watched, 1, block)) or []

    async def _read_round_trip(self, client: Any, args: list[Any]) -> Any:
        """The ``XREADGROUP``, with the acks waiting to go and, when this member takes part
        in partition ownership, the count of the group's members."""
        if not self._acked and self._leases is None:
            return await command(client, *args)
        async with client.pipeline(transaction=False) as pipe:
            self._queue_acks(pipe)
            if self._leases is not None:
                pipe.zcard(self.channel.keys.members(self.group))
            pipe.execute_command(*args)
            try:
                *_, members, answer = await pipe.execute()
            finally:
                self._acks_sent()
        if self._leases is not None:
            self._leases.heard(members)
        return answer

    def _held(self, partition: int, entry: Any, fields: Any, attempt: int, now: float) -> _Held:
        if isinstance(fields, list):  # from a script: flat [name, value, ...]
            fields = dict(zip(fields[::2], fields[1::2], strict=True))
        entry = _bytes(entry)
        message = decode(fields, self.channel.name, entry)
        return _Held(partition, entry, message, int(attempt), now)

    def _hold(self, read: list[_Held]) -> None:
        for held in read:
            self.held[held.partition] += 1
            self._ready.append(held)
        if read and self._keep_alive_at == math.inf:
            self._keep_alive_at = read[0].touched + self.transport.claim_idle / 3

    async def _take_due(self, credit: int, now: float) -> bool:
        """Move due scheduled entries to their streams, and claim entries of the retry
        sets that are due; whether any came (moved ones come by the next read)."""
        keys = self.channel.keys
        next_due = now + self.transport.poll
        streams = [keys.stream(p) for p in range(self.channel.lanes)]
        release = [int(now * 1000), 100, int(self.channel.ephemeral)]
        _, due = await self._script("release", [keys.scheduled, *streams, keys.added], release)
        if due:
            next_due = min(next_due, float(due) / 1000)
        took: list[_Held] = []
        for p in list(self.owned):
            args = [self._group, self.consumer, int(now * 1000), credit - len(took)]
            entries, due = await self._script(
                "take_due", [keys.retry(self.group, p), keys.stream(p)], args
            )
            took += [self._held(p, e, f, count, now) for e, f, count in entries]
            if due:
                next_due = min(next_due, float(due) / 1000)
            if len(took) >= credit:
                next_due = now
                break
        self._due_at = next_due
        self._hold(took)
        return bool(took)

    async def _reclaim(self, credit: int, now: float) -> bool:
        """Claim the entries of members that are gone; whether any came.

        The script says when the next is due (the moment the next entry of another
        consumer will have been idle ``claim_idle``), so an orphan is claimed
        within a round trip of that moment, and at once again while more are left
        than this member had credit for; a look at least every quarter of
        ``claim_idle`` finds the entries members took since.
        """
        idle = int(self.transport.claim_idle * 1000)
        took: list[_Held] = []
        wait = self.transport.claim_idle / 4
        for p, stream in list(self.owned.items()):
            orphaned, asked = p in self._orphans, credit - len(took)
            args = [self._group, self.consumer, 0 if orphaned else idle, asked, PARKED]
            entries, due = await self._script("reclaim", [stream], args)
            took += [self._held(p, e, f, count, now) for e, f, count in entries]
            if orphaned and len(entries) < asked:  # every orphan of it is claimed
                self._orphans.discard(p)
            wait = min(wait, int(due) / 1000)
            if len(took) >= credit:
                wait = 0.0
                break
        # a partition taken while this ran has its orphans claimed next, before any read
        self._reclaim_at = now if self._orphans else now + wait
        if took:
            log.info(
                "claimed %d entries of %r left by a member that is gone",
                len(took),
                self.channel.name,
            )
        self._hold(took)
        return bool(took)

    async def _script(self, name: str, keys: list[str], args: list[Any]) -> Any:
        with translated(f"{name} on channel {self.channel.name!r}"):
            return await self.transport.script(name, keys, args)

    # -- keeping an ephemeral channel's keys alive ---------------------------------
    def note_use(self, expiry: float | None) -> None:
        """Note in the channel's ``idle`` hash that the group is in use, from the start and
        every third of its expiry while this member is read: ``expiry`` for a group just
        made with one, else it keeps the one it has (see :mod:`._idle`)."""
        self._new_expiry = expiry
        self._renew_at = 0.0

    def _renew_due(self) -> float | None:
        return None if self._renew_at == math.inf else self._renew_at

    async def _renew(self, now: float) -> None:
        """Renew the keys' time to live every third of it, while this member lives (on a
        durable channel: note that the group is in use, if it expires)."""
        if now < self._renew_at:
            return
        if not self.channel.ephemeral:
            with translated(f"noting the use of group {self.group!r}"):
                self.expiry = await _idle.touch(
                    self.transport, self.channel, self.group, self._new_expiry
                )
            self._new_expiry = None
            self._renew_at = math.inf if self.expiry is None else now + self.expiry / 3
            return
        with translated(f"renewing channel {self.channel.name!r}"):
            alive = await self.transport.renew(self.channel, self.group)
        if not alive:
            await self.transport.forget(self.channel, [self.group])  # subscribing makes it anew
            raise ConnectionLost(
                f"the keys of ephemeral channel {self.channel.name!r} expired before this "
                f"member renewed them (ephemeral_ttl {self.transport.ephemeral_ttl:g} s); "
                "subscribe again"
            )
        self._renew_at = now + self.transport.ephemeral_ttl / 3

    # -- keeping held entries fresh ----------------------------------------------
    def _keep_alive_due(self) -> float | None:
        return None if self._keep_alive_at == math.inf else self._keep_alive_at

    def _all_held(self) -> Iterable[_Held]:
        yield from self._unsettled.values()
        yield from self._ready

    async def _keep_alive(self, now: float) -> None:
        """Reset the idle time of entries held long, so no member reclaims them."""
        if now < self._keep_alive_at:
            return
        every = self.transport.claim_idle / 3
        stale = [h for h in self._all_held() if h.touched + every <= now]
        client = await self.transport.link()
        async with round_trip(
            f"keeping deliveries of {self.channel.name!r}", self.transport.api_timeout
        ):
            for p in {h.partition for h in stale}:
                ids = [h.entry for h in stale if h.partition == p]
                stream = self.channel.keys.stream(p)
                await client.xclaim(stream, self._group, self.consumer, 0, list(ids), justid=True)
        for held in stale:
            held.touched = now
        oldest = min((h.touched for h in self._all_held()), default=None)
        self._keep_alive_at = math.inf if oldest is None else oldest + every

    # -- settling ----------------------------------------------------------------
    async def ack(self, delivery: Delivery) -> None:
        """Settled: the ``XACK`` goes with the subscription's next read (within 10 ms), at
        once if a read is blocked waiting for entries, or at close.

        Like a NATS ack, it returns before the server has it; if this process
        dies first, the entry comes again (at least once).
        """
        held = self._settle(delivery)
        if held is not None:
            if not self._acked:
                self._acked_at = self.transport.clock.time()
                self._wake.set()  # a reader asleep sets its alarm for sending it
            self._acked.setdefault(held.partition, []).append(held.entry)
            if not self._idle.is_set() and not self._flushing:
                await self._flush_beside_read()

    async def _flush_beside_read(self) -> None:
        """A blocking read is under way and will not carry the acks soon: send them now."""
        self._flushing = True
        try:
            while self._acked and not self._idle.is_set():
                with contextlib.suppress(TransportError):  # not acked: it comes again
                    await self._send_acks()
        finally:
            self._flushing = False

    def _queue_acks(self, pipe: Any) -> None:
        """Put the acks waiting to be sent into ``pipe``."""
        acked, self._acked = self._acked, {}
        for p, entries in acked.items():
            pipe.xack(self.channel.keys.stream(p), self._group, *entries)
        self._acking.update(acked)

    def _acks_sent(self) -> None:
        """The acks queued into a pipeline reached the server (or failed: they come again)."""
        acking, self._acking = self._acking, set()
        if self._owner is not None and not acking <= self.owned.keys():
            self._owner.wake()  # a partition being handed over may now be free

    async def _send_acks(self) -> None:
        if self._acked:
            client = await self.transport.link()
            async with (
                round_trip(f"acknowledging on {self.channel.name!r}", self.transport.api_timeout),
                client.pipeline(transaction=False) as pipe,
            ):
                self._queue_acks(pipe)
                try:
                    await pipe.execute()
                finally:
                    self._acks_sent()

    async def nack(self, delivery: Delivery, *, delay: float = 0.0) -> None:
        held = self._settle(delivery)
        if held is not None:
            with contextlib.suppress(TransportError):  # not given back: reclaimed later
                await self._give_back([held], delay, handed_out=True)
            self._due_at = min(self._due_at, self.transport.clock.time() + delay)

    async def stop_intake(self) -> None:
        """Take nothing more: no read, no claim of retries or orphans.

        Waits for a refill under way (a blocking read returns within ``poll``):
        cancelled instead, a read or claim the server has done would leave its
        entries pending under this consumer until ``claim_idle``. What it
        brought waits here and goes back at close, after what the caller nacked
        (a nack is due now, so it comes first from the retry set).
        """
        if self._state != "open" or not self._intake:
            return
        self._intake = False
        self._wake.set()
        clock = self.transport.clock
        with contextlib.suppress(TimeoutError):
            async with timeout_at(
                clock, clock.time() + self.transport.poll + self.transport.api_timeout
            ):
                await self._rested.wait()

    def _settle(self, delivery: Delivery) -> _Held | None:
        token = delivery.token
        assert isinstance(token, tuple)
        held = self._unsettled.pop(token, None)
        if held is not None:
            self.held[held.partition] -= 1
            if self._owner is not None and held.partition not in self.owned:
                self._owner.wake()  # a partition being handed over may now be free
            if self.prefetch - len(self._unsettled) - len(self._ready) >= self._low:
                self._wake.set()  # room for a read worth its round trip
        return held

    async def _give_back(self, items: list[_Held], delay: float, *, handed_out: bool) -> None:
        """Park ``items`` in their retry sets, due after ``delay``.

        Entries never handed out get their delivery count lowered by one, so
        their next delivery is the same attempt.
        """
        due = int((self.transport.clock.time() + delay) * 1000)
        keys = self.channel.keys
        for p in sorted({h.partition for h in items}):
            args: list[Any] = [self._group, due, PARKED]
            for held in (h for h in items if h.partition == p):
                args += (held.entry, "" if handed_out else max(0, held.attempt - 1))
            await self._script("give_back", [keys.retry(self.group, p), keys.stream(p)], args)

    async def _return_all(self) -> None:
        """Send the acks, and give every held entry back, due now, so it comes again at
        once to some member."""
        with contextlib.suppress(TransportError):  # not acked: it comes again
            await self._send_acks()
        handed, unread = list(self._unsettled.values()), list(self._ready)
        self._unsettled.clear()
        self._ready.clear()
        self.held.clear()
        with contextlib.suppress(TransportError):  # the link is down: reclaimed after claim_idle
            await self._give_back(handed, 0.0, handed_out=True)
            await self._give_back(unread, 0.0, handed_out=False)

    async def _end(self, state: str) -> None:
        self._state = state
        self._wake.set()
        self.transport.left(self)
        await self._return_all()
        self.owned.clear()
        if self._owner is not None:
            self._owner.stop()

    async def break_link(self) -> None:
        if self._state == "open":
            self._why = "the link to Redis was cut"
            await self._end("broken")

    async def close(self) -> None:
        if self._state == "open":
            await self._end("closed")
        with contextlib.suppress(TimeoutError):  # a read under way gives back what it got
            async with asyncio.timeout(self.transport.poll + 2.0):
                await self._idle.wait()
        if self._owner is not None:
            await self._owner.leave()
            self._task = None
        await self._forget_consumer()
        if self.expiry is not None:
            await _idle.left(self.transport, self.channel, self.group)
        if self.channel.ephemeral:
            await self.transport.forget(self.channel, [self.group])

    async def _forget_consumer(self) -> None:
        """Remove this consumer from the group if it holds nothing (best effort)."""
        with contextlib.suppress(TransportError):
            async with round_trip("leaving the group", self.transport.api_timeout):
                client = await self.transport.link()
                for p in range(self.channel.lanes):
                    stream = self.channel.keys.stream(p)
                    pending = await client.xpending_range(
                        stream, self._group, "-", "+", 1, consumername=self.consumer
                    )
                    if not pending:
                        await client.xgroup_delconsumer(stream, self._group, self.consumer)


def _bytes(value: bytes | str) -> bytes:
    return value if isinstance(value, bytes) else value.encode()
