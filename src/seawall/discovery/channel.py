"""The registry channel on a transport: announcing and listening (asyncio).

The registry needs no server of its own: announcements are messages on
:data:`~seawall.discovery.REGISTRY_CHANNEL`, a publish-subscribe channel of the
backbone. Every reader subscribes as a group of its own (``registry.<instance>``),
so each reader hears every beat, and deletes that group when it stops. The
channel keeps at most :data:`RETENTION` seconds of beats (``max_age``): a
reader that starts replays that much (on transports that can replay), which is
how a fresh caller learns which services exist before it judges a request, and
why a group left by a killed reader costs at most that much on the broker. A
surviving reader deletes the group of an instance that expired without saying
``leaving`` (it was killed), so groups do not pile up either.

:class:`Announcer` publishes the beats; :class:`RegistryReader` feeds a
:class:`~seawall.discovery.roster.Roster`. A transport may also want to see
what is announced (NATS answers ``$SRV.PING/INFO/STATS`` from it): if it has an
``announced(announcements)`` method (:class:`Announces`) the announcer calls it
on every beat, so the runtime never imports an adapter.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Protocol, runtime_checkable

import msgspec

from .._clock import Clock, timeout_at
from .._exceptions import SeawallError
from .._messages.envelope import Message
from .._messages.ids import uuid7
from .._messages.payload import schema_uri
from .._transport import ChannelSpec, FromTime, Start, Transport
from .announcement import HEARTBEAT, REGISTRY_CHANNEL, Announcement
from .roster import Roster

__all__ = [
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

RETENTION = 600.0
"""Seconds of beats the registry channel keeps: a fresh reader replays them, so a
service counts as known for this long after its last instance went away."""

_ENCODE = msgspec.json.Encoder().encode
_DECODE = msgspec.json.Decoder(Announcement).decode
_SCHEMA = schema_uri(Announcement)


def registry_spec(channel: str = REGISTRY_CHANNEL) -> ChannelSpec:
    """How the registry channel is laid out: one partition, short retention."""
    return ChannelSpec(name=channel, max_age=RETENTION, max_messages=100_000)


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
        self.beats = 0

    async def run(self) -> None:
        """Announce until cancelled; a failed publish is logged and the next beat tries again."""
        await self.transport.declare(registry_spec(self.channel))
        while True:
            await self.beat()
            await self.clock.sleep(self.heartbeat)

    async def beat(self, *, leaving: bool = False) -> None:
        """Announce once (``leaving``: the last word of a clean stop)."""
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
        except (SeawallError, TimeoutError) as exc:
            log.warning("registry: announcing on %s failed: %s", self.channel, exc)
        self.beats += 1


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
        replay: float = RETENTION,
        own: Callable[[Announcement], bool] | None = None,
        prune: bool = True,
    ) -> None:
        self.transport = transport
        self.clock = clock
        self.instance = instance
        self.roster = roster or Roster()
        self.channel = channel
        self.replay = replay
        """Seconds of history to replay at start (on transports that can)."""
        self.own = own
        """Whether an announcement is this process's own: hearing one back means the
        replay has caught up (everything older was read)."""
        self.prune = prune
        self.group = reader_group(instance)
        self.ready = asyncio.Event()
        """Set once subscribed."""

    async def run(self) -> None:
        """Listen until cancelled; delete the reader's group on the way out."""
        await self.transport.declare(registry_spec(self.channel))
        now = self.clock.time()
        can_replay = self.transport.capabilities.replay and self.replay > 0
        start: Start = FromTime(now - self.replay) if can_replay else "latest"
        sub = await self.transport.subscribe(
            self.channel, group=self.group, prefetch=256, start=start
        )
        self.roster.listening(now, caught_up=not can_replay and self.own is None)
        self.ready.set()
        try:
            async with asyncio.TaskGroup() as tasks:
                tasks.create_task(self._expire())
                async for delivery in sub:
                    await sub.ack(delivery)
                    self._take(delivery.message, now)
        finally:
            await sub.close()
            with contextlib.suppress(Exception):
                await asyncio.shield(self.transport.delete(self.channel, group=self.group))

    def _take(self, message: Message, since: float) -> None:
        announcement = decode(message)
        if announcement is None:
            return
        now = self.clock.time()
        sent = message.time.timestamp() if message.time is not None else now
        if now - sent > self.roster.expiry and not announcement.leaving:
            self.roster.remember(announcement)  # history: known, but not live
        else:  # when it was said (another host's clock may be a little ahead: not later than now)
            self.roster.feed(announcement, min(sent, now))
        if self.own is not None and self.own(announcement):  # read back: history is behind
            self.roster.listening(since, caught_up=True)

    async def _expire(self) -> None:
        while True:
            await self.clock.sleep(self.roster.expiry / 5)
            for gone in self.roster.expire(self.clock.time()):
                log.info("registry: %s/%s stopped beating", gone.service, gone.instance)
                if self.prune and gone.instance != self.instance:
                    with contextlib.suppress(Exception):
                        await self.transport.delete(self.channel, group=reader_group(gone.instance))
