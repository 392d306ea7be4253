"""Dead letters for operators: list, read, send back and purge them, on every transport.

Written once above the transport interface; no adapter has a part of its own
but the NATS publish key (see :data:`~seawall._messages.envelope.REDRIVE_OF`).
The dispatcher gives up on a message by publishing it, with the
:data:`~seawall.DLQ_HEADERS`, to its group's dead-letter channel
``<group>.dlq``. Operators read that channel as one more consumer group of it,
:data:`OPERATOR_GROUP`, which starts at the earliest message kept. A
:class:`DeadLetterView` subscribes and holds what arrives *unsettled*: reading
consumes nothing, since closing the view hands every dead letter back to the
group (the transport contract: what is not settled comes again). Only
:meth:`DeadLetterView.redrive` and :meth:`DeadLetterView.purge` settle, one
dead letter at a time:

* redrive publishes the message back to the channel it came from, with the
  dead-letter headers removed (the delivery count starts again at 1), the same
  message id (an idempotent handler's inbox still applies) and
  :data:`REDRIVE_OF` naming the dead letter; records it on
  ``<group>.dlq.redriven``; and only then acks the dead letter. A redrive done
  twice therefore sends once: the second finds the dead letter settled. If the
  process dies between the publish and the ack, the dead letter comes back and
  may be sent a second time, which the inbox (and, on NATS, the publish key)
  drops: at most once for handlers that keep an inbox, as for any redelivery.
* purge acks, which drops the dead letter for good.

One view of a dead-letter channel at a time: dead letters a view holds are in
flight, so a second reader of the operator group sees only the rest until the
first closes. On RabbitMQ, messages published to a channel before any group of
it existed go to the first group that reads them; a dead-letter channel that
another group reads from its start (as the FTGO demo's audit does) shows the
operator only what arrives after the operator group was first made.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import logging
from collections.abc import Awaitable, Iterable
from datetime import UTC, datetime
from types import TracebackType
from typing import Self

import msgspec

from .._exceptions import TransportError
from .._messages.envelope import DLQ_HEADERS, DLQ_REASON, REDRIVE_OF, Message
from .._runtime.dispatcher import dead_letter_channel
from .._transport import Delivery, Subscription, Transport

__all__ = [
    "OPERATOR_GROUP",
    "REDRIVE_OF",
    "DeadLetter",
    "DeadLetterView",
    "Filter",
    "dead_letter_channels",
    "dlq_name",
    "record_channel",
]


log = logging.getLogger("seawall.console")

OPERATOR_GROUP = "seawall-operator"
"""The consumer group operators read dead-letter channels as."""

QUIET = 0.5
"""Seconds without a new dead letter after which a view counts as having seen them all."""
FIRST = 3.0
"""Seconds a view waits for the first dead letter (a new group's first fetch is slower)."""
LIMIT = 10_000
"""Most dead letters one view holds."""


def record_channel(dlq: str) -> str:
    """Where redrives of the dead letters of ``dlq`` are recorded."""
    return f"{dlq}.redriven"


@dataclasses.dataclass(frozen=True)
class DeadLetter:
    """One dead letter as it waits on its dead-letter channel ``dlq``."""

    dlq: str
    message: Message
    key: str = dataclasses.field(init=False)
    """This dead letter's identity: its message id, body and dead-letter headers.

    Distinct messages may share an id (any producer picks one), and one message may be
    dead-lettered twice (redriven, then failing again): each is its own key.
    """

    def __post_init__(self) -> None:
        digest = hashlib.blake2b(self.message.data, digest_size=8)
        for name in sorted(self.message.headers):
            digest.update(f"\0{name}\0{self.message.headers[name]}".encode())
        object.__setattr__(self, "key", f"{self.message.id}.{digest.hexdigest()}")

    def _header(self, name: str) -> str:
        return self.message.headers.get(name, "")

    @property
    def reason(self) -> str:
        """Why it was given up (``handler-error``, ``decode-error``, ``expired``, …)."""
        return self._header(DLQ_REASON)

    @property
    def error(self) -> str:
        """The error of the last attempt, ``Type: text``."""
        return self._header("seawall-dlq-error")

    @property
    def attempts(self) -> int:
        """Deliveries before it was given up."""
        text = self._header("seawall-dlq-attempt")
        return int(text) if text.isdigit() else 0

    @property
    def origin(self) -> str:
        """The channel it came from, where a redrive sends it back."""
        return self._header("seawall-dlq-channel")

    @property
    def group(self) -> str:
        """The consumer group that gave up on it."""
        return self._header("seawall-dlq-group")

    @property
    def at(self) -> datetime | None:
        """When it was given up."""
        text = self._header("seawall-dlq-time")
        with contextlib.suppress(ValueError):
            return datetime.fromisoformat(text)
        return None

    def redriven(self) -> Message:
        """The message to send back: dead-letter headers gone, :data:`REDRIVE_OF` added."""
        headers = {k: v for k, v in self.message.headers.items() if k not in DLQ_HEADERS}
        headers[REDRIVE_OF] = self.key
        return msgspec.structs.replace(self.message, headers=headers)


@dataclasses.dataclass(frozen=True, kw_only=True)
class Filter:
    """Which dead letters an operation takes: all, or those matching every field given."""

    reason: str | None = None
    type: str | None = None
    ids: frozenset[str] = frozenset()
    """Message ids or dead-letter keys."""

    def __call__(self, letter: DeadLetter) -> bool:
        if self.reason is not None and letter.reason != self.reason:
            return False
        if self.type is not None and letter.message.type != self.type:
            return False
        return not self.ids or bool({letter.message.id, letter.key} & self.ids)


class DeadLetterView:
    """The dead letters of one dead-letter channel, held unsettled while the view is open.

    ``async with DeadLetterView(transport, "orders.dlq") as view:`` then
    :meth:`settle_in` (wait until no more arrive) or, for a live view, read
    :attr:`letters` whenever; new dead letters join as they arrive.
    """

    def __init__(self, transport: Transport, dlq: str, *, limit: int = LIMIT) -> None:
        self.transport = transport
        self.dlq = dlq
        self.limit = limit
        self._held: dict[str, tuple[DeadLetter, Delivery]] = {}
        self._arrived = asyncio.Event()
        self._sub: Subscription | None = None
        self._stack = contextlib.AsyncExitStack()

    @property
    def letters(self) -> list[DeadLetter]:
        """The dead letters held now, oldest first."""
        return [letter for letter, _ in self._held.values()]

    async def __aenter__(self) -> Self:
        async with contextlib.AsyncExitStack() as stack:
            sub = await self.transport.subscribe(
                self.dlq, group=OPERATOR_GROUP, prefetch=self.limit, start="earliest"
            )
            stack.push_async_callback(quietly, sub.close())
            tasks = await stack.enter_async_context(asyncio.TaskGroup())
            reader = tasks.create_task(self._read(sub))
            stack.callback(reader.cancel)  # before the task group waits for it
            self._sub = sub
            self._stack = stack.pop_all()
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self._stack.aclose()

    async def _read(self, sub: Subscription) -> None:
        try:
            async for delivery in sub:
                letter = DeadLetter(self.dlq, delivery.message)
                # held long, a dead letter may come again (NATS after ack_wait): settle the latest
                self._held[letter.key] = (letter, delivery)
                self._arrived.set()
        except TransportError as exc:  # the broker went away: what is held stays readable
            log.warning("%s: stopped reading dead letters: %s", self.dlq, exc)

    async def settle_in(self, *, quiet: float = QUIET, first: float = FIRST) -> list[DeadLetter]:
        """Wait until no new dead letter arrived for ``quiet`` seconds; the dead letters."""
        wait = first
        while len(self._held) < self.limit:
            self._arrived.clear()
            try:
                await asyncio.wait_for(self._arrived.wait(), wait)
            except TimeoutError:
                break
            wait = quiet
        return self.letters

    def select(self, which: Filter) -> list[DeadLetter]:
        """The held dead letters ``which`` takes."""
        return [letter for letter in self.letters if which(letter)]

    async def redrive(self, which: Filter, *, by: str = "") -> list[DeadLetter]:
        """Send the dead letters ``which`` takes back to their channels; those sent."""
        sent = []
        for letter in self.select(which):
            if not letter.origin:
                log.warning("%s: dead letter %s names no channel; kept", self.dlq, letter.key)
                continue
            await self.transport.publish(letter.origin, letter.redriven())
            await self.transport.publish(record_channel(self.dlq), _record(letter, by))
            await self._settle(letter)
            log.warning(
                "redrove dead letter %s (%s, %s) from %s to %s%s",
                letter.key,
                letter.message.type,
                letter.reason,
                self.dlq,
                letter.origin,
                f" for {by}" if by else "",
            )
            sent.append(letter)
        return sent

    async def purge(self, which: Filter, *, by: str = "") -> list[DeadLetter]:
        """Drop the dead letters ``which`` takes, for good; those dropped."""
        dropped = self.select(which)
        for letter in dropped:
            await self._settle(letter)
        if dropped:
            who = f" for {by}" if by else ""
            log.warning("purged %d dead letter(s) of %s%s", len(dropped), self.dlq, who)
        return dropped

    async def _settle(self, letter: DeadLetter) -> None:
        _, delivery = self._held.pop(letter.key)
        assert self._sub is not None, "settled inside the view"
        await self._sub.ack(delivery)


async def quietly(closing: Awaitable[None]) -> None:
    """Close what may already be gone with its broker."""
    try:
        await closing
    except TransportError as exc:
        log.debug("closing on a broken link: %s", exc)


def _record(letter: DeadLetter, by: str) -> Message:
    """What is kept of a redrive: the dead letter as it was, with when and by whom."""
    now = datetime.now(UTC).isoformat()
    headers = {**letter.message.headers, "seawall-redriven-at": now, REDRIVE_OF: letter.key}
    if by:
        headers["seawall-redriven-by"] = by
    return msgspec.structs.replace(letter.message, headers=headers)


def dead_letter_channels(groups: Iterable[str]) -> list[str]:
    """The dead-letter channels of these consumer groups, sorted, once each."""
    return sorted({dead_letter_channel(group) for group in groups})


def dlq_name(name: str) -> str:
    """A dead-letter channel named by itself (``orders.dlq``) or by its group (``orders``)."""
    return name if name.endswith(".dlq") else dead_letter_channel(name)
