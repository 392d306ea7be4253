"""What a consumer does on behalf of call policies: pause on a dependency, answer repeats.

:class:`Gate`: a service that declares ``depends_on`` targets stops taking
messages while one of their circuit breakers is open, and a message whose
handler failed on such a target is held (on a timer, like a parked retry) and
tried again once the breaker lets trial calls through, with no attempt spent:
with the downstream down, nothing burns its attempts into the dead-letter
channel, and the consumer resumes by itself when the downstream is back.

:class:`ReplyCache`: a command channel's consumer keeps the replies it gave
by request id (:class:`~seawall.resilience.RecentReplies`, and the service's
:class:`~seawall.resilience.ReplyStore` if it gave one); a repeated request is
answered from there and its handler does not run again.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import msgspec

from .._messages.envelope import Message
from .node import Node
from .service import Subscription

if TYPE_CHECKING:
    from ..resilience import Guards, RecentReplies, ReplyStore

__all__ = ["Gate", "ReplyCache"]

_MAX_HOLD_BACKOFF = 6
"""A message held on a dependency whose breaker is still closed waits 2**held
initial backoffs, counted up to this many doublings."""


class Gate:
    """Pauses one consumer while a dependency's breaker is open; see the module docstring."""

    __slots__ = ("_guards", "_node", "_spec", "depends_on")

    def __init__(self, node: Node, guards: Guards, spec: Subscription) -> None:
        self._node = node
        self._guards = guards
        self._spec = spec
        self.depends_on = spec.depends_on

    @classmethod
    def of(cls, node: Node, spec: Subscription) -> Gate | None:
        """The gate of a consumer, or None when it depends on nothing."""
        if not spec.depends_on or node.guards is None:
            return None
        return cls(node, node.guards, spec)

    def target_of(self, error: BaseException) -> str | None:
        """The dependency ``error`` came from, if it came from one."""
        from .guarded import blamed  # a gate exists only where the guarded calls are loaded

        target = blamed(error)
        return target if target in self.depends_on else None

    def hold_for(self, error: BaseException | None, held: int) -> float | None:
        """Seconds to hold a message (None: go on). Before its handler (``error`` None):
        while a dependency's breaker refuses calls. After a failure on a dependency:
        until its breaker lets a call through, or a backoff while it is still closed."""
        now = self._node.clock.time()
        if error is None:
            return self._guards.blocked(self.depends_on, now) or None
        target = self.target_of(error)
        if target is None:
            return None
        wait = self._guards.blocked((target,), now)
        if wait > 0:
            return wait
        return self._spec.retry.backoff(min(held, _MAX_HOLD_BACKOFF) + 1)

    async def closed(self) -> None:
        """Return once no dependency's breaker refuses calls (at once, mostly)."""
        clock = self._node.clock
        while wait := self._guards.blocked(self.depends_on, clock.time()):
            await clock.sleep(wait)


class ReplyCache:
    """The replies a command channel's consumer gave, by request id."""

    __slots__ = ("_node", "_recent", "_service", "_store")

    def __init__(self, node: Node, spec: Subscription, service: str) -> None:
        from ..resilience import RecentReplies  # with the first command channel's consumer

        self._node = node
        self._service = service
        self._recent = RecentReplies(spec.reply_cache)
        self._store: ReplyStore | None = spec.reply_store

    @classmethod
    def of(cls, node: Node, spec: Subscription, service: str) -> ReplyCache | None:
        """The cache of a command channel's consumer (subscriptions answer no requests)."""
        return cls(node, spec, service) if spec.is_command_channel else None

    @property
    def recent(self) -> RecentReplies:
        return self._recent

    def fresh(self, request: Message) -> bool:
        """Whether ``request`` is certainly not a repeat, told without awaiting: no reply to
        its id is kept, none is running and there is no store to ask. It is then marked as
        running, as :meth:`answered` would; False: ask :meth:`answered`."""
        return self._store is None and self._recent.begin(request.id)

    async def answered(self, request: Message) -> bool:
        """Whether ``request`` is a repeat, answered now (or answered by the run under way)."""
        recent = self._recent
        reply = recent.get(request.id)
        if reply is None:
            if recent.start(request.id):
                if self._store is None:
                    return False
                reply = await self._stored(request)
                if reply is None:
                    return False
            else:
                return True  # the first copy is running: its reply answers this one too
        assert isinstance(reply, Message)
        await self._node.reply_again(request, reply, source=self._service)
        return True

    async def _stored(self, request: Message) -> Message | None:
        assert self._store is not None
        data = await self._store.get(request.id)
        if data is None:
            return None
        reply = msgspec.msgpack.decode(data, type=Message)
        self._recent.put(request.id, reply)
        self._recent.finish(request.id)
        self._recent.hits += 1
        return reply

    @property
    def durable(self) -> bool:
        """Whether replies are kept in a store too (then :meth:`keep` awaits it)."""
        return self._store is not None

    def remember(self, request: Message, reply: Message) -> None:
        """Remember ``reply`` as the answer to ``request``, in memory only."""
        self._recent.answer(request.id, reply)

    async def keep(self, request: Message, reply: Message) -> None:
        """Remember ``reply`` as the answer to ``request``."""
        self.remember(request, reply)
        if self._store is not None:
            data = msgspec.msgpack.encode(reply)
            await self._store.put(request.id, data, now=self._node.clock.time())

    def failed(self, request: Message) -> None:
        """``request``'s handler failed: a repeat may run it again."""
        self._recent.finish(request.id)

    def reset(self) -> None:
        """The subscription is gone: nothing is running any more."""
        self._recent.reset()
