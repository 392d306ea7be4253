"""Reading a channel's priority levels on NATS: the highest level first, within the credit.

A channel with priority levels (one partition) keeps a subject per level in its
stream and a group has a durable consumer per level (see :mod:`._layout`).
JetStream knows nothing of their order, so a member decides what to pull:

* **Probing.** With credit free, a member asks the levels one after another,
  highest first, for as many messages as it has credit, each with a pull
  request that does not wait (``no_wait``: the server answers at once with what
  it has, then a status). The round goes down a level only once the level
  above has answered, and stops when the credit is used. A new round starts
  once a quarter of the credit is free again (or nothing is held), so a steady
  flow costs a round per quarter of the credit, not one per message.
* **Watching.** When a round ends with credit left, every level was empty: each
  level then gets a long pull request for one message, so a message published
  to any level wakes the member at once. The first to come ends the watch
  (the next round probes from the top again); the other requests stay open
  until they expire. A member may so hold up to one message per level beyond
  its credit, but hands out no more than its credit: held messages wait, and
  are handed out highest level first, FIFO within a level.

Order holds among what one member has probed: a member never takes a lower
level while a higher one answered with messages it had room for. Messages
already held by one member are not reordered by later publishes of a higher
level elsewhere (as with any prefetch).
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections import deque
from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol, TypeVar

import nats.errors
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription as NatsSubscriptionHandle

from ._layout import Stream
from ._wire import translated

if TYPE_CHECKING:
    from . import NatsTransport

__all__ = ["LevelReader", "by_level"]

log = logging.getLogger("seawall.transports.nats")

_STATUS = "Status"


class _Held(Protocol):
    partition: int


H = TypeVar("H", bound=_Held)


class _Puller(Protocol):
    outstanding: int
    requests: dict[str, float]

    async def request(self, count: int, now: float) -> None: ...


class _Reader(Protocol):
    """The subscription's side: what it holds, its pullers, and where messages go."""

    transport: NatsTransport
    stream: Stream
    consumers: list[str]
    prefetch: int

    def holding(self) -> int: ...

    def level_pullers(self) -> Sequence[_Puller]: ...

    async def arrived(self, msg: Msg, partition: int) -> None: ...

    def woken(self) -> None: ...


def by_level(ready: deque[H], held: H) -> None:
    """Queue ``held`` behind every held message of its level or a higher one."""
    at = len(ready)
    while at > 0 and ready[at - 1].partition < held.partition:
        at -= 1
    ready.insert(at, held)


class LevelReader:
    """A member's probes of its priority levels; see the module docstring."""

    def __init__(self, reader: _Reader) -> None:
        self.reader = reader
        self._handle: NatsSubscriptionHandle | None = None
        self._inbox = ""
        self._count = 0
        self.probing: int | None = None  # the level a probe is out for
        self.due = 0.0  # by when the server has answered the probe
        self._asked = 0
        self._next: int | None = None  # the next level of the round (None: no round)

    async def start(self) -> None:
        client = self.reader.transport.client
        self._inbox = client.new_inbox()
        self._handle = await client.subscribe(f"{self._inbox}.*", cb=self._arrived)

    async def _arrived(self, msg: Msg) -> None:
        status = msg.headers.get(_STATUS) if msg.headers else None
        if status is None:
            # The subject names the level, even for the answer to a probe given up on.
            level = int(msg.subject.rpartition(".")[2])
            await self.reader.arrived(msg, level)
            if level == self.probing:
                self._asked -= 1
                if self._asked <= 0:
                    self._answered()
        elif status != "100" and msg.subject == self._reply:
            self._answered()  # 404 nothing there, 408 fewer than asked: the level is done

    @property
    def _reply(self) -> str:
        return f"{self._inbox}.{self._count}"

    def _answered(self) -> None:
        self.probing = None
        self.reader.woken()

    def free(self) -> int:
        """Credit not used by held messages or open pull requests."""
        reader = self.reader
        asked = sum(p.outstanding for p in reader.level_pullers())
        return reader.prefetch - reader.holding() - asked

    def wants(self) -> bool:
        """Whether a round is under way or enough credit is free to start one."""
        free = self.free()
        if self._next is not None:
            return free > 0
        return free >= max(1, self.reader.prefetch // 4) or (
            free > 0 and self.reader.holding() == 0
        )

    async def refill(self, now: float) -> None:
        """Take the next step of the round: a probe, or the watch that ends it."""
        if self.probing is not None and now < self.due:
            return  # its answer is on its way
        self.probing = None
        if not self.wants():
            self._next = None
            return
        level = self.reader.stream.levels - 1 if self._next is None else self._next
        if level >= 0:
            self._next = level - 1
            await self._probe(level, self.free(), now)
            return
        self._next = None
        await self._watch(now)

    async def _probe(self, level: int, count: int, now: float) -> None:
        reader = self.reader
        transport = reader.transport
        self._count += 1
        self.probing, self._asked = level, count
        self.due = now + transport.api_timeout
        subject = f"$JS.API.CONSUMER.MSG.NEXT.{reader.stream.name}.{reader.consumers[level]}"
        body = json.dumps({"batch": count, "no_wait": True}).encode()
        with translated(f"pulling from channel {reader.stream.channel!r}"):
            await transport.client.publish(subject, body, reply=self._reply)

    async def _watch(self, now: float) -> None:
        for puller in self.reader.level_pullers():
            if not puller.requests:
                with translated(f"pulling from channel {self.reader.stream.channel!r}"):
                    await puller.request(1, now)

    async def stop(self) -> None:
        handle, self._handle = self._handle, None
        self.probing = None
        if handle is not None:
            with contextlib.suppress(nats.errors.Error):
                await handle.unsubscribe()
