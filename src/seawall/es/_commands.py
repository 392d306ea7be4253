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
projections and the outbox never see commands): each command is the first
event of a stream named after its message id, so a redelivered command is
logged once. When the handler has finished, its outcome (the reply, or that
there was none) follows as the stream's second event. A redelivered command
whose outcome is logged is not handled again: the logged reply is returned,
so a requester whose first reply was lost gets the same one. A command
logged without an outcome (the handler failed, or the process died while it
ran) is handled again: that is how a failure is retried.

The outcome is logged after the handler's own writes, not with them (the log
is another store): a crash between the two handles the command again. For
exactly-once state changes, keep the state in the same database as an
:class:`~seawall.outbox.Inbox`.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar, cast

import msgspec

from .._exceptions import ConcurrencyError, ConfigurationError, RequestError
from .._messages.ids import uuid7
from .._messages.payload import Document, Payload
from .._runtime.context import Context
from .._runtime.service import reply_types
from ._codec import EventCodec
from ._records import EventStore

__all__ = ["CommandLog", "CommandOutcome", "ReplaySink", "SideEffect"]

H = TypeVar("H", bound=Callable[..., Awaitable[Any]])
_STREAM = "command-"


class CommandOutcome(Document, frozen=True):
    """How a logged command ended: the reply's type and JSON, or no reply (both None)."""

    type_name = "seawall.CommandOutcome"
    reply_type: str | None = None
    reply: bytes | None = None


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
        codec.register(CommandOutcome)

    async def record(self, command: Payload, id: str | None = None) -> bool:
        """Log ``command`` under its message id; False if that id was logged before."""
        new = self.codec.encode(command, id=id or uuid7())
        try:
            await self.store.append(_STREAM + new.id, [new], 0)
        except ConcurrencyError:
            return False  # a redelivery of a command already logged
        return True

    async def outcome(self, id: str) -> CommandOutcome | None:
        """How the command logged under ``id`` ended; None if it has not (yet)."""
        for record in await self.store.read_stream(_STREAM + id, 2):
            ended = self.codec.decode(record)
            if isinstance(ended, CommandOutcome):
                return ended
        return None

    async def finish(self, id: str, reply: Any) -> None:
        """Log the outcome of the command logged under ``id`` (its reply, or None)."""
        if isinstance(reply, Payload):
            ended = CommandOutcome(reply_type=reply.type_name, reply=msgspec.json.encode(reply))
        else:
            ended = CommandOutcome()
        with contextlib.suppress(ConcurrencyError):  # a copy handled at once logged it first
            await self.store.append(_STREAM + id, [self.codec.encode(ended)], 1)

    def sourced(self, handler: H) -> H:
        """Wrap a command handler ``(command, ctx)``: log the command, skip a repeat.

        A repeated command whose outcome is logged returns the logged reply without
        running the handler; any other runs it, then logs how it ended.
        """
        replies = reply_types(handler)

        @functools.wraps(handler)
        async def logged(command: Payload, ctx: Context, *args: Any) -> Any:
            message = ctx.message
            id = uuid7() if message is None else message.id
            if not await self.record(command, id=id):
                ended = await self.outcome(id)
                if ended is not None:
                    return _reply(ended, replies, id)
            result = await handler(command, ctx, *args)
            await self.finish(id, result)
            return result

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
                if record.stream.startswith(_STREAM) and record.type != CommandOutcome.type_name:
                    sink.now = record.time
                    await handler(self.codec.decode(record), sink)
            after = records[-1].position
        return sink


def _reply(ended: CommandOutcome, replies: dict[str, type[Payload]], id: str) -> Any:
    """The logged reply, decoded again (None if the handler returned none)."""
    if ended.reply_type is None or ended.reply is None:
        return None
    cls = replies.get(ended.reply_type)
    if cls is None:
        raise ConfigurationError(
            f"command {id} was answered with a {ended.reply_type}, and its handler no longer "
            "declares that it returns one; annotate the return type"
        )
    return msgspec.json.decode(ended.reply, type=cls)
