"""Partition leases of a NATS group: the JetStream KV lease store of partition ownership.

Who reads which partition, and how a partition is handed over, is decided
once for every broker by :mod:`seawall._transport.ownership` and driven by
:class:`seawall._transport.membership.Member`; this module keeps the leases
in the KV bucket ``seawall_leases``, whose entries live for the bucket's TTL
after their last write:

* a member's lease is the key ``<stream>.<group>.m.<member>``, put every
  third of the TTL;
* partition ``p``'s lease is the key ``<stream>.<group>.p.<p>``, created only
  when absent (compare-and-set on revision 0, or on the delete marker left by
  its last holder) or taken over from a holder whose member lease ran out
  (compare-and-set on the revision read: the key itself outlives its holder
  until the bucket's TTL, which an older bucket may have longer than ``lease``),
  renewed by an update that expects the revision this
  member last wrote (one that fails means another member wrote since: the
  lease is lost) and deleted only at that revision. The fencing epoch is the
  revision of the create: the bucket's stream numbers every write, so a
  later take always has a higher one.

Members learn of each other by watching ``<stream>.<group>.>``: a member key
put or deleted, or a lock key written, wakes the member at once. A member
that stops writing drops out of the others' tables after the TTL.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Mapping
from dataclasses import replace
from typing import TYPE_CHECKING

import nats.errors
import nats.js.errors
from nats.js.client import JetStreamContext
from nats.js.kv import KeyValue

from ..._transport.assignment import Leases, token
from ..._transport.membership import Heartbeat, Member
from ..._transport.ownership import Ownership
from ._wire import LEASE_BUCKET, translated

if TYPE_CHECKING:
    from ._subscription import NatsSubscription

__all__ = ["KvLeases", "member"]

log = logging.getLogger("seawall.transports.nats")

_LISTEN = 0.25  # seconds a look for changes lasts, so a stopping member is not held up
_WANTING = 0.1  # seconds between tries at a partition this member should own and is locked


class KvLeases:
    """One member's leases on one JetStream channel and group."""

    def __init__(self, sub: NatsSubscription, kv: KeyValue) -> None:
        self.kv = kv
        self.clock = sub.transport.clock
        self.api_timeout = sub.transport.api_timeout
        self.me = sub.member
        self.prefix = f"{sub.stream.name}.{token(sub.group)}"
        self.table = Leases(sub.transport.lease)
        self._revisions: dict[int, int] = {}  # partition -> revision this member last wrote
        self._watcher: KeyValue.KeyWatcher | None = None

    def _lock(self, partition: int) -> str:
        return f"{self.prefix}.p.{partition}"

    async def open(self) -> None:
        """Learn the bucket's TTL and the members there are (before the first round)."""
        with translated(f"reading the lease bucket {LEASE_BUCKET}"):
            status = await self.kv.status()
            if status.ttl and status.ttl < self.table.ttl:  # keys go sooner: renew sooner
                self.table = Leases(status.ttl)
            self._watcher = await self.kv.watch(f"{self.prefix}.>")
        while await self._look(self.api_timeout) is not None:  # until the initial values end
            pass

    async def renew(self, held: Mapping[int, int]) -> Heartbeat:
        lost: set[int] = set()
        with translated(f"renewing the lease of {self.me}"):
            await self.kv.put(f"{self.prefix}.m.{self.me}", b"")
            self.table.heard(self.me, self.clock.time())
            for partition in sorted(held):
                if not await self._renew_lock(partition):
                    lost.add(partition)
        return Heartbeat(await self.members(), frozenset(lost))

    async def _renew_lock(self, partition: int) -> bool:
        revision = self._revisions.get(partition, 0)
        try:
            self._revisions[partition] = await self.kv.update(
                self._lock(partition), self.me.encode(), last=revision
            )
        except nats.js.errors.KeyWrongLastSequenceError:
            log.warning("%s lost partition %d: its lock ran out", self.me, partition)
            self._revisions.pop(partition, None)
            return False
        return True

    async def members(self) -> frozenset[str]:
        return frozenset(self.table.live(self.clock.time()))

    async def acquire(self, partition: int) -> int | None:
        with translated(f"taking partition {partition}"):
            try:
                revision = await self.kv.create(self._lock(partition), self.me.encode())
            except nats.js.errors.KeyWrongLastSequenceError:
                taken = await self._take_from_the_gone(partition)
                if taken is None:
                    return None  # still held by its previous owner, who is draining it
                revision = taken
        self._revisions[partition] = revision
        return revision

    async def _take_from_the_gone(self, partition: int) -> int | None:
        """The lock's revision once taken over from a holder whose membership lease ran
        out (its key outlives it until the bucket's TTL), or None while the holder lives.

        Compare-and-set on the revision read: the holder, should it come back, finds its
        next renewal refused and its epoch stale."""
        try:
            entry = await self.kv.get(self._lock(partition))
        except (nats.js.errors.KeyNotFoundError, nats.js.errors.KeyDeletedError):
            return None  # let go meanwhile: the next try creates it
        holder = (entry.value or b"").decode()
        if holder == self.me or holder in self.table.live(self.clock.time()):
            return None
        try:
            revision: int = await self.kv.update(
                self._lock(partition), self.me.encode(), last=entry.revision
            )
        except nats.js.errors.KeyWrongLastSequenceError:
            return None
        log.info(
            "%s took partition %d over from %s, whose lease ran out", self.me, partition, holder
        )
        return revision

    async def release(self, partition: int, epoch: int) -> None:
        revision = self._revisions.pop(partition, None)
        if revision is not None:
            with translated(f"handing partition {partition} over"):
                await self.kv.delete(self._lock(partition), last=revision)

    async def leave(self, held: Mapping[int, int]) -> None:
        try:
            for partition, epoch in sorted(held.items()):
                await self.release(partition, epoch)
            with translated(f"leaving as {self.me}"):
                await self.kv.delete(f"{self.prefix}.m.{self.me}")
        finally:
            await self._unwatch()

    async def changed(self) -> bool:
        return bool(await self._look(_LISTEN))

    async def _look(self, seconds: float) -> str | None:
        """Wait up to ``seconds`` for one update and note it; the key it was about."""
        watcher = self._watcher
        if watcher is None:  # gone: the member is leaving
            await self.clock.sleep(seconds)
            return None
        try:
            entry = await watcher.updates(timeout=seconds)  # type: ignore[no-untyped-call]
        except nats.errors.TimeoutError:
            return None
        if not isinstance(entry, KeyValue.Entry):
            return None  # the end of the initial values, or the watcher stopped
        kind, _, who = entry.key.removeprefix(f"{self.prefix}.").partition(".")
        if kind == "m" and entry.operation is None:
            self.table.heard(who, self.clock.time())
        elif kind == "m":
            self.table.left(who)
        return entry.key

    async def _unwatch(self) -> None:
        watcher, self._watcher = self._watcher, None
        if watcher is not None:
            with contextlib.suppress(nats.errors.Error):
                await watcher.stop()  # type: ignore[no-untyped-call]


async def lease_bucket(js: JetStreamContext, *, ttl: float, replicas: int) -> KeyValue:
    """The lease bucket, made with ``replicas`` (and the lease as its TTL) if new, or
    raised to ``replicas`` if it has fewer: partition ownership must survive the loss of
    any server the channels survive, so the bucket is replicated as the channels are."""
    try:
        kv = await js.key_value(LEASE_BUCKET)
    except nats.js.errors.BucketNotFoundError:
        with contextlib.suppress(nats.js.errors.BadRequestError):  # made by another meanwhile
            return await js.create_key_value(
                bucket=LEASE_BUCKET, history=1, ttl=ttl, replicas=replicas
            )
        kv = await js.key_value(LEASE_BUCKET)
    info = (await kv.status()).stream_info
    if (info.config.num_replicas or 1) < replicas:
        log.info("raising the lease bucket %s to %d replicas", LEASE_BUCKET, replicas)
        await js.update_stream(replace(info.config, num_replicas=replicas))
    return kv


async def member(sub: NatsSubscription, kv: KeyValue) -> Member:
    """``sub``'s part in its group's partition ownership, over leases in ``kv``."""
    leases = KvLeases(sub, kv)
    await leases.open()
    ownership = Ownership(sub.member, sub.stream.partitions, ttl=leases.table.ttl, retry=_WANTING)
    scope = f"{sub.stream.channel}/{sub.group}"
    clock = sub.transport.clock
    return Member(ownership, leases, sub, clock, scope=scope, grace=2 * leases.api_timeout)
