"""The registry channels on a transport: announcing and listening (asyncio).

The registry needs no server of its own: announcements are messages on two
publish-subscribe channels of the backbone.

* :data:`~seawall.discovery.REGISTRY_CHANNEL` carries every beat of every
  instance and keeps :data:`RETENTION` seconds of them (``max_age``): enough for
  a reader that starts to replay the last expiry period and see who is live now.
* :data:`KNOWN_CHANNEL` carries one entry per instance when it starts (and once
  every :data:`KNOWN_EVERY` while it runs) and keeps a week of them
  (:data:`KNOWN_RETENTION`): a fresh reader replays it, which is how a caller
  that has just started learns which services exist without replaying every
  beat (a few entries per instance, not one a second).

Every reader listens as a group of its own (``registry.<instance>``), so it
hears every message, and deletes its groups when it stops. A group left behind
by a killed reader (or by a delete that ran past :data:`CLEANUP`) is deleted by
the broker once it has had no member for :data:`READER_EXPIRY`, where the
transport honours ``idle_expiry`` (:attr:`~seawall.Capabilities.group_expiry`);
besides, a surviving reader that saw the instance expire without saying
``leaving`` (it was killed) deletes its groups sooner. (On ``memory://`` every
group goes with the process.)

:class:`Announcer` publishes; :class:`RegistryReader` feeds a
:class:`~seawall.discovery.roster.Roster`. A transport may also want to see
what is announced (NATS answers ``$SRV.PING/INFO/STATS`` from it): if it has an
``announced(announcements)`` method (:class:`Announces`) the announcer awaits
it on every beat, so the runtime never imports an adapter.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Protocol, runtime_checkable

import msgspec

from .._clock import Clock, timeout_at
from .._exceptions import PermissionDenied, SeawallError
from .._messages.envelope import Message
from .._messages.ids import uuid7
from .._messages.payload import schema_uri
from .._transport import ChannelSpec, FromTime, Start, Subscription, Transport
from .announcement import EXPIRY, HEARTBEAT, REGISTRY_CHANNEL, Announcement
from .roster import Roster

__all__ = [
    "KNOWN_CHANNEL",
    "KNOWN_EVERY",
    "KNOWN_RETENTION",
    "READER_EXPIRY",
    "RETENTION",
    "Announcer",
    "Announces",
    "RegistryReader",
    "decode",
    "encode",
    "reader_group",
    "registry_spec",
]

log = logging.getLogger("seawall.discovery")

RETENTION = 60.0
"""Seconds of beats the registry channel keeps (what a reader left behind by a
killed process can cost the broker)."""

KNOWN_CHANNEL = REGISTRY_CHANNEL + ".known"
"""Where each instance says once that it exists (at start, then every :data:`KNOWN_EVERY`):
the small history a fresh reader replays to learn which services exist."""

KNOWN_RETENTION = 7 * 86_400.0
"""Seconds the known channel keeps: a service counts as known for this long after its
last instance went away."""

PRUNE_AFTER = 30.0
"""Seconds an instance must have been silent before a reader deletes its reader groups."""

CLEANUP = 2.0
"""Seconds a reader spends at most deleting groups, when it stops or prunes."""

READER_EXPIRY = 300.0
"""Seconds a reader group may have no member before the broker deletes it (where the
transport honours ``idle_expiry``): far above any reconnect or stalled loop of a live
reader, so only the groups of readers that are gone expire."""

KNOWN_EVERY = 86_400.0
"""Seconds between two entries of one running instance on the known channel."""

_ENCODE = msgspec.json.Encoder().encode
_DECODE = msgspec.json.Decoder(Announcement).decode
_SCHEMA = schema_uri(Announcement)


def registry_spec(channel: str = REGISTRY_CHANNEL) -> ChannelSpec:
    """How a registry channel is laid out: one partition, bounded retention."""
    age = KNOWN_RETENTION if channel.endswith(".known") else RETENTION
    return ChannelSpec(name=channel, max_age=age, max_messages=100_000)


def reader_group(instance: str) -> str:
    """The group a reader of that instance listens as."""
    return f"registry.{instance}"


def encode(announcement: Announcement, now: float) -> Message:
    """The message carrying one announcement, made at ``now``."""
    return Message(
        id=uuid7(),
        time=datetime.fromtimestamp(now, UTC),
        type=Announcement.type_name,
        source=f"{announcement.service}/{announcement.instance}",
        data=_ENCODE(announcement),
        kind="document",
        dataschema=_SCHEMA,
    )


def decode(message: Message) -> Announcement | None:
    """The announcement a message carries, or None if it carries none this reader reads."""
    if message.type != Announcement.type_name:
        return None
    try:
        return _DECODE(message.data)
    except msgspec.MsgspecError:
        log.warning("registry: unreadable announcement %s from %s", message.id, message.source)
        return None


@runtime_checkable
class Announces(Protocol):
    """A transport that wants to see this process's announcements (e.g. for NATS micro)."""

    async def announced(self, announcements: Sequence[Announcement]) -> None: ...


class Announcer:
    """Publishes what ``describe()`` returns every :data:`HEARTBEAT` seconds."""

    def __init__(
        self,
        transport: Transport,
        clock: Clock,
        describe: Callable[[], Sequence[Announcement]],
        *,
        channel: str = REGISTRY_CHANNEL,
        heartbeat: float = HEARTBEAT,
        also: Callable[[Sequence[Announcement]], None] | None = None,
    ) -> None:
        self.transport = transport
        self.clock = clock
        self.describe = describe
        self.channel = channel
        self.heartbeat = heartbeat
        self.also = also
        """Called with every beat's announcements too (the local roster takes them at once)."""
        self.known = channel + ".known"
        self.beats = 0

    async def run(self) -> None:
        """Announce until cancelled; a failed publish is logged and the next beat tries again."""
        await self.transport.declare(registry_spec(self.channel))
        await self.transport.declare(registry_spec(self.known))
        known_at = -math.inf
        while True:
            now = self.clock.time()
            due = now >= known_at + KNOWN_EVERY
            if await self.beat(known=due) and due:
                known_at = now
            await self.clock.sleep(self.heartbeat)

    async def beat(self, *, leaving: bool = False, known: bool = False) -> bool:
        """Announce once (``leaving``: the last word of a clean stop; ``known``: also on
        the known channel); whether every publish went through."""
        announcements = list(self.describe())
        if leaving:
            announcements = [msgspec.structs.replace(a, leaving=True) for a in announcements]
        if self.also is not None:
            self.also(announcements)
        now = self.clock.time()
        try:
            async with timeout_at(self.clock, now + self.heartbeat):
                if isinstance(self.transport, Announces):
                    await self.transport.announced(announcements)
                for announcement in announcements:
                    await self.transport.publish(self.channel, encode(announcement, now))
                if known:
                    for announcement in announcements:
                        await self.transport.publish(self.known, encode(announcement, now))
        except PermissionDenied:
            raise  # not passing: the owner decides (the runtime goes on without announcing)
        except (SeawallError, TimeoutError) as exc:
            log.warning("registry: announcing on %s failed: %s", self.channel, exc)
            return False
        finally:
            self.beats += 1
        return True


class RegistryReader:
    """Keeps a :class:`Roster` up to date from the registry channel."""

    def __init__(
        self,
        transport: Transport,
        clock: Clock,
        *,
        instance: str,
        roster: Roster | None = None,
        channel: str = REGISTRY_CHANNEL,
        replay: float = EXPIRY,
        history: bool = True,
        own: Callable[[Announcement], bool] | None = None,
        prune: bool = True,
        group_expiry: float = READER_EXPIRY,
    ) -> None:
        self.transport = transport
        self.clock = clock
        self.instance = instance
        self.roster = roster or Roster()
        self.channel = channel
        self.replay = replay
        """Seconds of beats to replay at start (on transports that can): the live ones."""
        self.history = history
        """Whether to read the known channel too (every service that ran lately)."""
        self.own = own
        """Whether an announcement is this process's own: hearing one back means the
        replay has caught up (everything older was read)."""
        self.prune = prune
        self.group_expiry = group_expiry
        """Seconds the reader's groups may have no member before the broker deletes them."""
        self.group = reader_group(instance)
        self.ready = asyncio.Event()
        """Set once subscribed."""
        self._replays = False

    async def run(self) -> None:
        """Listen until cancelled; delete the reader's groups on the way out."""
        transport = self.transport
        known = self.channel + ".known"
        channels = [self.channel, known] if self.history else [self.channel]
        for channel in channels:
            await transport.declare(registry_spec(channel))
        now = self.clock.time()
        can_replay = transport.capabilities.replay
        starts: dict[str, Start] = {
            self.channel: FromTime(now - self.replay) if can_replay else "latest",
            known: FromTime(now - KNOWN_RETENTION) if can_replay else "latest",
        }
        subs: list[Subscription] = []
        try:
            for channel in channels:
                subs.append(
                    await transport.subscribe(
                        channel,
                        group=self.group,
                        prefetch=256,
                        start=starts[channel],
                        idle_expiry=self.group_expiry,
                    )
                )
            self._replays = can_replay
            self.roster.listening(now)
            self.ready.set()
            async with asyncio.TaskGroup() as tasks:
                tasks.create_task(self._expire())
                if self.history:
                    tasks.create_task(self._read(subs[1], self._remember, now))
                await self._read(subs[0], self._take, now)
        finally:
            for sub in subs:
                await sub.close()
            await self._delete(channels, self.group)

    async def _delete(self, channels: Sequence[str], group: str) -> None:
        """Delete ``group`` of the registry channels, best effort and briefly: a broker that
        is gone must not hold up a stop (the channels' retention bounds what is left)."""
        with contextlib.suppress(Exception):
            async with timeout_at(self.clock, self.clock.time() + CLEANUP):
                for channel in channels:
                    deleting = asyncio.ensure_future(self.transport.delete(channel, group=group))
                    # past the bound it goes on alone; its failure is then nobody's to raise
                    deleting.add_done_callback(_settled)
                    await asyncio.shield(deleting)

    async def _read(
        self, sub: Subscription, take: Callable[[Message, float], None], since: float
    ) -> None:
        async for delivery in sub:
            await sub.ack(delivery)
            take(delivery.message, since)

    def _take(self, message: Message, since: float) -> None:
        announcement = decode(message)
        if announcement is None:
            return
        now = self.clock.time()
        sent = message.time.timestamp() if message.time is not None else now
        if now - sent > self.roster.expiry and not announcement.leaving:
            self.roster.remember(announcement)  # an old beat: known, but not live
        else:  # when it was said (another host's clock may be a little ahead: not later than now)
            self.roster.feed(announcement, min(sent, now))

    def _remember(self, message: Message, since: float) -> None:
        announcement = decode(message)
        if announcement is None:
            return
        self.roster.remember(announcement)
        if self._replays and self.own is not None and self.own(announcement):
            # its own entry read back: the replayed history is behind it
            self.roster.listening(since, caught_up=True)

    async def _expire(self) -> None:
        silent: dict[str, float] = {}  # instance -> when it expired without leaving
        while True:
            await self.clock.sleep(self.roster.expiry / 5)
            now = self.clock.time()
            for gone in self.roster.expire(now):
                log.info("registry: %s/%s stopped beating", gone.service, gone.instance)
                if self.prune and gone.instance != self.instance:
                    silent.setdefault(gone.instance, now)
            if silent:
                await self._prune(silent, now)

    async def _prune(self, silent: dict[str, float], now: float) -> None:
        """Delete the reader groups of instances silent for :data:`PRUNE_AFTER` seconds:
        killed, since they did not say they were leaving. Not sooner: a process whose
        beats were only late (a stalled loop, a slow link) would lose its reader."""
        live = {e.announcement.instance for e in self.roster.live(now)}
        for instance, since in list(silent.items()):
            if instance in live:
                del silent[instance]
            elif now - since >= PRUNE_AFTER:
                del silent[instance]
                await self._delete((self.channel, self.channel + ".known"), reader_group(instance))


def _settled(task: asyncio.Future[None]) -> None:
    """Mark a best-effort cleanup's outcome as seen (asyncio logs unseen failures)."""
    if not task.cancelled():
        task.exception()
