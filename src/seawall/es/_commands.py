"""Command sourcing: log each incoming command durably before it is handled.

Event sourcing keeps the *outcomes* (events): replaying them rebuilds the same
state, because applying a fact makes no decision and talks to nobody. Command
sourcing keeps the *requests*: replaying the command log re-runs the
decisions with today's code against fresh state. That answers other questions
(what would the new pricing rule have done to last month's orders? does the
refactored handler still decide the same?), and brings its own danger: a
handler's side effects (messages to other services, e-mails, payments) must
not happen again. Replay therefore hands the handler a :class:`ReplaySink`
instead of a live :class:`~seawall.Context`: sends and publishes are recorded
there, never delivered, and requests fail loudly, because their answers
cannot be recomputed.

The log is an event store of its own (another file or table prefix, so that
projections and the outbox never see commands): each command is the single
event of a stream named after its message id, so a redelivered command is
logged once.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar, cast

from .._exceptions import ConcurrencyError, RequestError
from .._messages.ids import uuid7
from .._messages.payload import Payload
from .._runtime.context import Context
from ._codec import EventCodec
from ._records import EventStore

__all__ = ["CommandLog", "ReplaySink", "SideEffect"]

H = TypeVar("H", bound=Callable[..., Awaitable[Any]])
_STREAM = "command-"


@dataclass(frozen=True)
class SideEffect:
    """A send or publish a replayed handler asked for, and did not get."""

    kind: str
    """``"send"`` or ``"publish"``."""
    channel: str | None
    payload: Payload


@dataclass
class ReplaySink:
    """Stands in for a handler's Context during replay: records, never delivers."""

    service: str = "replay"
    now: float = 0.0
    effects: list[SideEffect] = field(default_factory=list)
    message: None = None
    deadline: None = None

    async def send(self, channel: str, command: Payload, **options: Any) -> None:
        """Record the command instead of sending it."""
        self.effects.append(SideEffect("send", channel, command))

    async def publish(self, event: Payload, *, channel: str | None = None, **options: Any) -> None:
        """Record the event instead of publishing it."""
        self.effects.append(SideEffect("publish", channel, event))

    def request(self, channel: str, command: Payload, **options: Any) -> Any:
        """Refuse: a reply cannot be recomputed during replay."""
        raise RequestError(
            f"replay: {type(command).__qualname__} to {channel!r} is a request; replies cannot "
            "be replayed. Split the handler so the part before the request is replayed alone"
        )


class CommandLog:
    """A durable, ordered log of the commands a service received."""

    def __init__(self, store: EventStore, codec: EventCodec) -> None:
        self.store = store
        self.codec = codec

    async def record(self, command: Payload, id: str | None = None) -> bool:
        """Log ``command`` under its message id; False if that id was logged before."""
        new = self.codec.encode(command, id=id or uuid7())
        try:
            await self.store.append(_STREAM + new.id, [new], 0)
        except ConcurrencyError:
            return False  # a redelivery of a command already logged
        return True

    def sourced(self, handler: H) -> H:
        """Wrap a command handler ``(command, ctx)`` so the command is logged first."""

        @functools.wraps(handler)
        async def logged(command: Payload, ctx: Context, *args: Any) -> Any:
            message = ctx.message
            await self.record(command, id=None if message is None else message.id)
            return await handler(command, ctx, *args)

        return cast(H, logged)

    async def replay(
        self,
        handler: Callable[[Any, Any], Awaitable[Any]],
        *,
        sink: ReplaySink | None = None,
        after: int = 0,
    ) -> ReplaySink:
        """Re-run every logged command after position ``after`` through ``handler``.

        ``handler`` should work on fresh state (a new store or repository); side
        effects land in ``sink`` (a new :class:`ReplaySink` unless given), returned.
        """
        sink = sink or ReplaySink()
        while records := await self.store.read_all(after, 500):
            for record in records:
                if record.stream.startswith(_STREAM):
                    sink.now = record.time
                    await handler(self.codec.decode(record), sink)
            after = records[-1].position
        return sink
