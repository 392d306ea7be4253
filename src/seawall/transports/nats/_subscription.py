"""Reading a JetStream channel: pull requests, credit, settling, and partitions read as owned.

The consuming half of :mod:`seawall.transports.nats` (whose docstring gives
the design); kept apart so each module stays small. Which partitions a member
reads is partition ownership's call (:mod:`._ownership`): the subscription is
its reader (``start_reading``, ``stop_reading``, ``busy``). On a channel with
priority levels it reads every level, and :mod:`._levels` decides what to pull;
every subscription also runs a :class:`~._schedule.Mover` for its channel's
delayed messages, and on a channel whose requests are direct a
:class:`~._direct.DirectReader`, whose deliveries it hands out first, within the
same ``prefetch``. nats-py is imported through the package, which says how to
install it when it is missing.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections import Counter, deque
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import nats
import nats.errors
import nats.js.errors
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription as NatsSubscriptionHandle
from nats.js import api
from nats.js.kv import KeyValue

from ..._clock import TimerHeap, wait_until
from ..._exceptions import ConnectionLost, DecodeError, TransportError
from ..._messages.envelope import Message, from_headers
from ..._messages.ids import uuid7
from ..._transport import Delivery
from ..._transport.membership import Member
from ..._transport.ownership import Fence
from ._direct import DirectReader
from ._layout import Stream
from ._levels import LevelReader, by_level
from ._ownership import member
from ._schedule import Mover
from ._wire import MSG_ID, translated

if TYPE_CHECKING:
    from . import NatsTransport

__all__ = ["NatsSubscription", "Stream"]

log = logging.getLogger("seawall.transports.nats")

_STATUS = "Status"
_PENDING = "Nats-Pending-Messages"
_DESCRIPTION = api.Header.DESCRIPTION  # nats-py keys it by the enum, whose hash is not the text's


@dataclass(slots=True)
class _Held:
    msg: Msg
    partition: int
    touched: float


class _Puller:
    """Pull requests for one partition's consumer, and the messages they bring.

    Messages arrive under their stream subject, so they cannot be told apart by
    request; ``outstanding`` counts what was asked for and has not come, and a
    request's end (status 408 or 409) says how many of it never will.
    """

    def __init__(self, sub: NatsSubscription, partition: int, consumer: str) -> None:
        self.sub = sub
        self.partition = partition
        self.consumer = consumer
        self.inbox = sub.transport.client.new_inbox()
        self.next_subject = f"$JS.API.CONSUMER.MSG.NEXT.{sub.stream.name}.{consumer}"
        self.outstanding = 0
        self.requests: dict[str, float] = {}  # reply subject -> when the server must be done
        self.handle: NatsSubscriptionHandle | None = None
        self.paused_until = 0.0  # after a refusal, ask again no sooner than this
        self._count = 0

    async def start(self) -> None:
        client = self.sub.transport.client
        self.handle = await client.subscribe(f"{self.inbox}.*", cb=self._arrived)

    async def request(self, count: int, now: float) -> None:
        transport = self.sub.transport
        self._count += 1
        reply = f"{self.inbox}.{self._count}"
        expires = transport.pull_expires
        self.requests[reply] = now + expires + transport.api_timeout
        self.outstanding += count
        body = json.dumps({"batch": count, "expires": int(expires * 1e9)}).encode()
        await transport.client.publish(self.next_subject, body, reply=reply)

    def last_due(self) -> float | None:
        """When the server is done with every pull request still open (None if none is)."""
        return max(self.requests.values(), default=None)

    def sweep(self, now: float) -> float | None:
        """Forget requests past their deadline (the server lost them); the next deadline."""
        for reply in [r for r, due in self.requests.items() if due <= now]:
            del self.requests[reply]
        if not self.requests:
            self.outstanding = 0
        return min(self.requests.values(), default=None)

    async def _arrived(self, msg: Msg) -> None:
        status = msg.headers.get(_STATUS) if msg.headers else None
        if status is None:
            self.outstanding = max(0, self.outstanding - 1)
            await self.sub.arrived(msg, self.partition)
        elif status != "100":  # 100 is a heartbeat; every other status ends the request
            assert msg.headers is not None
            if self.requests.pop(msg.subject, None) is not None:
                pending = int(msg.headers.get(_PENDING, "0") or 0)
                self.outstanding = 0 if not self.requests else max(0, self.outstanding - pending)
            if status != "408":  # not just expired: refused (409, 503), so do not hammer
                self._refused(status, str(msg.headers.get(_DESCRIPTION, "")))
            self.sub.wake.set()

    def _refused(self, status: str, description: str) -> None:
        self.paused_until = self.sub.transport.clock.time() + 0.25
        log.debug("pull from %s refused: %s %s", self.next_subject, status, description)
        if "deleted" in description.lower():
            self.sub.lost(f"its consumer was deleted ({status} {description})")

    async def stop(self) -> None:
        """Stop pulling; messages already on their way still arrive before this returns,
        and the server holds no pull request of this puller any more (on a live link)."""
        handle, self.handle = self.handle, None
        asked = bool(self.requests)
        self.requests.clear()
        self.outstanding = 0
        if handle is None:
            return
        with contextlib.suppress(nats.errors.Error):
            if not self.sub.transport.client.is_connected:
                await handle.unsubscribe()
                return
            await handle.drain()  # type: ignore[no-untyped-call]
        if asked:
            await self._drop_requests()

    async def _drop_requests(self) -> None:
        """Make the server forget this puller's open pull requests, now that nobody reads them.

        The server drops a pull request whose inbox has no interest only when it
        next looks at its waiting requests. Until then a NAK of one of this
        consumer's messages meets a stale request: nats-server 2.9 then loses the
        redelivery (back only after AckWait, behind the later messages of its
        key) and delivers a later message twice. Asking for the consumer's info
        makes the server look (it counts the waiting requests), so it goes on
        this same connection after the unsubscribe, before any NAK.
        """
        transport = self.sub.transport
        with contextlib.suppress(TransportError, nats.errors.Error):
            js = await transport.link()
            await js.consumer_info(self.sub.stream.name, self.consumer)


class NatsSubscription:
    """One member of a group on a JetStream channel."""

    def __init__(
        self,
        transport: NatsTransport,
        stream: Stream,
        group: str,
        consumers: list[str],
        prefetch: int,
        kv: KeyValue | None,
    ) -> None:
        self.transport = transport
        self.stream = stream
        self.group = group
        self.prefetch = prefetch
        self.consumers = consumers
        self.member = uuid7()
        self.ack_wait = transport.ack_wait_of(stream)
        self.wake = asyncio.Event()
        self.pullers: dict[int, _Puller] = {}
        self.held: Counter[int] = Counter()  # partition -> received and not settled
        self._ready: deque[_Held] = deque()
        self._unsettled: dict[str, _Held] = {}  # by ack subject
        self._state = "open"  # open | closed | broken
        self._returned = False  # True once _return_all gave everything held back
        self._intake = True  # False once stop_intake was called: no pulling any more
        self._kv = kv
        self._owner: Member | None = None
        self._lost: str | None = None  # why the subscription must end, found in a callback
        self._expiry = 0.0  # after a broken link: when its open pull requests have expired
        # The reader arms a timer at every wait (for the next pull request or keepalive
        # due, seconds away) and nearly always cancels it: on a heap of our own that is
        # a push and a cleared field, not a loop timer handle made and dropped per message.
        self._timers = TimerHeap(transport.clock)
        self._levels = LevelReader(self) if stream.levels > 1 else None
        self._mover = Mover(transport, stream)
        self._direct = DirectReader(self) if stream.direct else None

    async def start(self) -> None:
        await self._mover.start()
        if self._direct is not None:
            with translated(f"subscribing to direct requests of {self.stream.channel!r}"):
                await self._direct.start()
        if self._levels is not None:
            with translated(f"pulling from channel {self.stream.channel!r}"):
                await self._levels.start()
        if self._kv is None:
            for log in range(self.stream.logs):
                await self.start_reading(log, 0)
            return
        self._owner = await member(self, self._kv)
        await self._owner.join()
        await self._owner.start(self._broke)

    async def _broke(self, exc: Exception) -> None:
        """The partition ownership failed: the subscription breaks."""
        await self._end("broken")

    # -- partitions (the reader's part in partition ownership) ---------------
    async def start_reading(self, partition: int, epoch: int) -> None:
        if self._state != "open" or not self._intake:
            return
        puller = _Puller(self, partition, self.consumers[partition])
        self.pullers[partition] = puller
        with translated(f"pulling from channel {self.stream.channel!r}"):
            await puller.start()
        self.wake.set()

    async def stop_reading(self, partition: int) -> None:
        """Stop pulling ``partition``; messages already on their way arrive before this
        returns (the server hands a pull request nothing once its inbox has no interest)."""
        puller = self.pullers.pop(partition, None)
        if puller is not None:
            await puller.stop()

    def busy(self, partition: int) -> bool:
        return self.held[partition] > 0

    def fence(self, partition: int) -> Fence | None:
        """The fence of a write that depends on owning ``partition`` (see
        :class:`~seawall.Fence`), or None on a channel of one partition."""
        return None if self._owner is None else self._owner.fence(partition)

    # -- priority levels (what :class:`LevelReader` asks of its reader) ----------
    def holding(self) -> int:
        """Messages received and not settled, over every level."""
        return sum(self.held.values())

    def level_pullers(self) -> list[_Puller]:
        return list(self.pullers.values())

    def woken(self) -> None:
        self.wake.set()

    # -- deliveries ------------------------------------------------------------
    async def arrived(self, msg: Msg, partition: int) -> None:
        if self._returned:  # came after everything held was given back: give it back
            await self._give_back([msg])
            return
        self.held[partition] += 1
        held = _Held(msg, partition, self.transport.clock.time())
        if self._levels is None:
            self._ready.append(held)
        else:
            by_level(self._ready, held)
        self.wake.set()

    def __aiter__(self) -> AsyncIterator[Delivery]:
        return self._deliveries()

    def lost(self, reason: str) -> None:
        """End the subscription as broken, from a callback that cannot do it itself."""
        self._lost = reason
        self.wake.set()

    async def _deliveries(self) -> AsyncIterator[Delivery]:
        while True:
            if self._lost is not None and self._state == "open":
                await self._end("broken")
            if self._state == "broken":
                why = self._lost or "the link to NATS broke"
                raise ConnectionLost(
                    f"stopped reading channel {self.stream.channel!r} as group {self.group!r}: "
                    f"{why}; subscribe again"
                )
            if self._state == "closed" or not self._intake:
                return
            direct = self._direct
            if direct is not None and direct.waiting and self._room():
                yield direct.take()
                continue
            if self._ready and self._room():
                held = self._ready.popleft()  # touched when it came: the server's clock runs
                self._unsettled[held.msg.reply] = held
                yield self._delivery(held)
                continue
            self.wake.clear()
            await self._refill()
            _cancel_not_lost()
            await self._wait()

    def _room(self) -> bool:
        """Whether fewer than ``prefetch`` deliveries are unsettled (direct ones too)."""
        held = len(self._unsettled)
        if self._direct is not None:
            held += self._direct.held
        return held < self.prefetch

    def _delivery(self, held: _Held) -> Delivery:
        msg = held.msg
        return Delivery(
            message=_decode(msg),
            channel=self.stream.channel,
            partition=held.partition if self._levels is None else 0,
            attempt=_attempt(msg),
            token=msg.reply,
        )

    async def _refill(self) -> None:
        """Ask each owned partition for as many messages as its share of credit allows."""
        if self._state != "open" or not self.pullers:
            return
        now = self.transport.clock.time()
        if self._levels is not None:
            await self._levels.refill(now)
            return
        for puller in list(self.pullers.values()):
            if want := self._want(puller, now):
                with translated(f"pulling from channel {self.stream.channel!r}"):
                    await puller.request(want, now)

    def _want(self, puller: _Puller, now: float) -> int:
        """How many messages to ask ``puller``'s partition for now (0: none yet).

        Credit is topped up in steps of a quarter share, so a steady flow costs
        one pull request per quarter share rather than one per message.
        """
        if puller.paused_until > now:
            return 0
        share = max(1, self.prefetch // len(self.pullers))
        want = share - self.held[puller.partition] - puller.outstanding
        if want > 0 and (not puller.requests or want >= max(1, share // 4)):
            return want
        return 0

    async def _wait(self) -> None:
        """Sleep until woken, a pull request is overdue or a held delivery needs a keepalive."""
        clock = self.transport.clock
        now = clock.time()
        dues = [due for p in self.pullers.values() if (due := p.sweep(now)) is not None]
        dues += [p.paused_until for p in self.pullers.values() if p.paused_until > now]
        if self._levels is not None and self._levels.probing is not None:
            dues.append(self._levels.due)
        keepalive = self.ack_wait / 2
        if self._unsettled or self._ready:
            oldest = min(h.touched for h in self._all_held())
            if now - oldest >= keepalive:
                await self._keep_alive()
                return
            dues.append(oldest + keepalive)
        await wait_until(self._timers, self.wake, min(dues) if dues else None)

    def _all_held(self) -> list[_Held]:
        """Every message received and not settled: handed out, then waiting, in order."""
        return [*self._unsettled.values(), *self._ready]

    async def _keep_alive(self) -> None:
        """Keep every held message alive at once, in the order received: should this
        process die, they are due again together and come again in stream order (one
        kept alive alone would come again after those received later)."""
        now = self.transport.clock.time()
        for held in self._all_held():
            held.touched = now
            with contextlib.suppress(nats.errors.Error):
                await held.msg.in_progress()

    async def ack(self, delivery: Delivery) -> None:
        if type(delivery.token) is int:  # a direct request's (see ._direct)
            self._settle_direct(delivery.token, None)
            return
        held = self._settle(delivery)
        if held is not None:
            with contextlib.suppress(nats.errors.Error):
                await held.msg.ack()
            await self._settled(held)

    async def nack(self, delivery: Delivery, *, delay: float = 0.0) -> None:
        if type(delivery.token) is int:
            self._settle_direct(delivery.token, delay)
            return
        held = self._settle(delivery)
        if held is not None:
            with contextlib.suppress(nats.errors.Error):
                await held.msg.nak(delay=delay if delay > 0 else None)
            await self._settled(held)

    def _settle_direct(self, number: int, delay: float | None) -> None:
        """Settle a direct request: forget it (an ack) or hand it out again (a nack)."""
        if self._direct is None:
            return
        if delay is None:
            self._direct.ack(number)
        else:
            self._direct.nack(number, delay)
        if self._direct.waiting or self._ready:  # else the freed credit unblocks nothing
            self.wake.set()

    def _settle(self, delivery: Delivery) -> _Held | None:
        assert isinstance(delivery.token, str)
        return self._unsettled.pop(delivery.token, None)

    async def _settled(self, held: _Held) -> None:
        self.held[held.partition] -= 1
        puller = self.pullers.get(held.partition)
        if puller is None:
            if self._owner is not None:
                self._owner.wake()  # a partition being handed over may now be free
        elif not self._ready and not self._wants_more(puller):
            # The reader has nothing this settle unblocks: no delivery waits for credit
            # and no pull request is due. Not waking it saves a trip round its loop
            # (a refill check, a timer armed and cancelled) on every message.
            return
        self.wake.set()

    def _wants_more(self, puller: _Puller) -> bool:
        """Whether settling frees credit the reader would ask for now."""
        if self._levels is not None:
            return self._levels.wants()
        return self._want(puller, self.transport.clock.time()) > 0

    async def _return_all(self) -> None:
        """Give everything held back, so it comes again to some member.

        While the link is up the NAKs go out at once: the pull requests were
        unsubscribed on this same connection first, so the server cannot hand the
        messages to them. On a broken link the server may still hold the old
        connection and its pull requests; a NAK processed then would send the
        message into that dead link (back only after AckWait), so the transport
        sends the NAKs once the server has let go of the old inboxes (see
        ``NatsTransport._return_parked``).

        The server redelivers NAKed messages in the order it got the NAKs, so
        messages still on their way while the pullers stop join the ones held
        (``arrived`` keeps them until this runs) and go back after them, in the
        order received: NAKed as they came, they would come again before the
        earlier messages of their keys.
        """
        self._returned = True
        held = [*self._unsettled.values(), *self._ready]
        self._unsettled.clear()
        self._ready.clear()
        self.held.clear()
        await self._give_back([item.msg for item in held])

    async def _give_back(self, msgs: list[Msg]) -> None:
        if not self.transport.client.is_connected:
            self.transport._park(msgs, self._expiry)
            return
        for msg in msgs:
            with contextlib.suppress(nats.errors.Error):
                await msg.nak()

    async def stop_intake(self) -> None:
        """Stop pulling, so that a NAK from now on goes to the group, not back here.

        While a pull request of this subscription is open, the server hands a
        NAKed message straight back to it, and a close right after could meet
        that redelivery with an unsubscribed inbox (the message then waits for
        AckWait, behind the later messages of its key). Each puller unsubscribes
        its inbox and has the server drop its open requests (see
        ``_Puller.stop``); NAKs sent after are kept by the server in their order
        for the next pull of any member. Messages already on their way arrive
        before this returns and are NAKed at close, after the caller's.
        """
        if self._state == "open" and self._intake:
            self._intake = False
            self._expiry = self._last_due()
            for partition in list(self.pullers):
                await self.stop_reading(partition)
            if self._levels is not None:
                await self._levels.stop()
            if self._direct is not None:
                await self._direct.stop()
            self.wake.set()

    def _last_due(self) -> float:
        """When the server is done with every pull request this subscription sent."""
        dues = [due for p in self.pullers.values() if (due := p.last_due()) is not None]
        if self._levels is not None:
            dues.append(self._levels.due)
        return max([self._expiry, *dues])

    async def _end(self, state: str) -> None:
        self._state = state
        self.wake.set()
        self.transport._left(self)
        self._expiry = self._last_due()
        if self._levels is not None:
            await self._levels.stop()
        for partition in list(self.pullers):
            await self.stop_reading(partition)
        await self._mover.stop()
        if self._direct is not None:
            await self._direct.close()
        await self._return_all()
        if self._owner is not None:
            self._owner.stop()

    async def break_link(self) -> None:
        if self._state == "open":
            await self._end("broken")

    async def close(self) -> None:
        if self._state == "open":
            await self._end("closed")
        if self._owner is not None:
            # It stops by itself within a round trip; cancelling is the fallback, not
            # the way, since Python 3.11's wait_for (inside nats-py) can swallow a
            # cancellation that meets a reply (see Member.stopped).
            await self._owner.leave()
        if self.stream.ephemeral:
            await self.transport._forget(self.stream)


def _cancel_not_lost() -> None:
    """Raise the cancellation of the current task if an await swallowed it.

    Python 3.11's ``asyncio.wait_for`` (which nats-py uses for its requests, a pull
    among them) drops a cancellation that arrives as its reply does; the task then
    reads on, and whoever cancelled it (a System stopping) waits forever. The task
    still counts the request (``cancelling()``), so it is raised here instead.
    """
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


def _attempt(msg: Msg) -> int:
    """JetStream's delivery count, read off the ack subject without building all its metadata."""
    assert msg.reply is not None
    tokens = msg.reply.split(".")
    if len(tokens) == 9 and tokens[0] == "$JS":  # $JS.ACK.<stream>.<consumer>.<delivered>.…
        return int(tokens[4])
    return msg.metadata.num_delivered  # the domain-qualified form: nats-py reads it


def _decode(msg: Msg) -> Message:
    headers = dict(msg.headers or {})
    headers.pop(MSG_ID, None)
    try:
        return from_headers(headers, msg.data)
    except DecodeError as exc:
        # Not a seawall message (no CloudEvents headers): handed on under a type no
        # handler has, so the dispatcher dead-letters it with the reason instead of losing it.
        meta = msg.metadata
        return Message(
            id=f"nats-{meta.stream}-{meta.sequence.stream}",
            type="seawall.nats.Undecodable",
            source=f"nats:{msg.subject}",
            data=msg.data,
            headers={**headers, "seawall-decode-error": str(exc)},
        )
