"""What every outbox backend provides: transactions that hold messages, and claims for relays.

A service that keeps its state in tables changes them and records the
messages that announce the change in **one** database transaction. The
messages go to the outbox table, not to the broker; a relay publishes them
once they are committed. So a crash can lose neither half: a committed change
always has its messages in the table, a rolled-back one never does.

:class:`OutboxTransaction` is that transaction as a handler sees it: it
publishes and sends like a :class:`~seawall.Context` (same arguments, same
envelope: causation, correlation and trace context from the message being
handled), and each backend adds how to run the service's own statements in
it. Messages are written to the table when the transaction commits, in the
order they were published; the message id is the row id.

:class:`Outbox` is a backend (SQLite, PostgreSQL): it opens transactions,
hands a relay the committed rows with :meth:`Outbox.claim`, and keeps the
inbox table that :class:`~seawall.outbox.Inbox` uses.
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from types import TracebackType
from typing import Generic, Self, TypeVar

from .._clock import Clock
from .._messages.envelope import Message
from .._messages.payload import Payload
from .._runtime.context import Context
from ._rows import OutboxRow, row_for

__all__ = ["InboxEntry", "Outbox", "OutboxTransaction"]

T = TypeVar("T", bound="OutboxTransaction")


@dataclass(frozen=True, slots=True)
class InboxEntry:
    """A message a consumer has handled: when, and the reply it gave (if any)."""

    consumer: str
    message_id: str
    handled_at: float
    reply_type: str | None = None
    reply: bytes | None = None


class OutboxTransaction(ABC):
    """A transaction in the service's database that also holds the messages it sends."""

    def __init__(self, context: Context, *, partitions: int) -> None:
        self.context = context
        """The handler's context (for requests, which an outbox cannot hold)."""
        self._partitions = partitions
        self._rows: list[OutboxRow] = []

    @property
    def service(self) -> str:
        return self.context.service

    @property
    def message(self) -> Message | None:
        """The message being handled, or None outside a handler."""
        return self.context.message

    @property
    def now(self) -> float:
        """The clock's time, epoch seconds."""
        return self.context.now

    @property
    def outgoing(self) -> tuple[OutboxRow, ...]:
        """The rows this transaction will write to the outbox when it commits."""
        return tuple(self._rows)

    async def publish(
        self,
        event: Payload,
        *,
        channel: str | None = None,
        key: str | None = None,
        subject: str | None = None,
        aggregate_type: str | None = None,
    ) -> str:
        """Publish ``event`` to ``channel`` (default: the service's events) once this commits.

        ``key`` is the partition key and the outbox's aggregate id: messages of one key
        are published in commit order. ``aggregate_type`` (default: the channel) is the
        Debezium routing column. Returns the message id.
        """
        channel = channel or f"{self.context.service}.events"
        return self._add(
            self.context.envelope(event, key=key, subject=subject), channel, aggregate_type
        )

    async def send(
        self,
        channel: str,
        command: Payload,
        *,
        key: str | None = None,
        subject: str | None = None,
        aggregate_type: str | None = None,
    ) -> str:
        """Send ``command`` to ``channel`` once this commits (one-way); returns the message id."""
        return self._add(
            self.context.envelope(command, key=key, subject=subject), channel, aggregate_type
        )

    def _add(self, message: Message, channel: str, aggregate_type: str | None) -> str:
        row = row_for(
            message,
            channel=channel,
            aggregate_type=aggregate_type or channel,
            partitions=self._partitions,
        )
        self._rows.append(row)
        return message.id

    # -- the inbox's statements, run in this transaction ------------------------------

    @abstractmethod
    async def _inbox_claim(self, consumer: str, message_id: str) -> InboxEntry | None:
        """Record that ``consumer`` handles ``message_id``; the earlier entry if it did before.

        A second transaction claiming the same pair waits until the first ends.
        """

    @abstractmethod
    async def _inbox_reply(self, consumer: str, message_id: str, type: str, reply: bytes) -> None:
        """Keep the reply of a claimed message with its entry."""


class Outbox(ABC, Generic[T]):
    """A service's database with an outbox table (and an inbox table); see the module doc."""

    clock: Clock
    partitions: int
    """Hash buckets of aggregate ids; a polling relay claims buckets, not single rows."""

    def __init__(self) -> None:
        self._committed = asyncio.Event()

    @abstractmethod
    def transaction(self, context: Context) -> AbstractAsyncContextManager[T]:
        """A transaction of the service's database: commits on a clean exit, else rolls back."""

    @abstractmethod
    def claim(
        self, limit: int, *, buckets: int | None = None
    ) -> AbstractAsyncContextManager[list[OutboxRow]]:
        """Up to ``limit`` committed rows, in commit order per aggregate, for one relay.

        No other relay gets the rows (nor later rows of their aggregates) while the
        block runs; a clean exit deletes them (or marks them published), an error
        leaves them for the next claim. ``buckets`` bounds how many partitions one
        claim takes, so several relays share them (backends with one relay ignore it).
        """

    @abstractmethod
    async def pending(self) -> int:
        """How many rows wait to be published."""

    @abstractmethod
    async def inbox_entry(self, consumer: str, message_id: str) -> InboxEntry | None:
        """What the inbox knows of ``message_id`` for ``consumer``, if anything."""

    @abstractmethod
    async def expire_inbox(self, before: float) -> int:
        """Forget inbox entries handled before ``before`` (epoch seconds); how many went."""

    @abstractmethod
    async def close(self) -> None:
        """Close the database connections (a transaction still open fails)."""

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    def wakeup(self) -> asyncio.Event:
        """An event set when a transaction with outgoing messages commits in this process.

        Take it *before* reading the table; a relay waits on it instead of polling.
        """
        return self._committed

    def _announce(self) -> None:
        """A transaction with outgoing rows committed: wake the waiting relays."""
        self._committed.set()
        self._committed = asyncio.Event()
