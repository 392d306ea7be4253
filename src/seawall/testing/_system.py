"""An in-process test system: the real services, the memory transport, a virtual clock.

::

    async with TestSystem(orders, kitchen) as system:
        reply = await system.context().request("orders", CreateOrder(...), returns=OrderCreated)
        await system.settle()
        assert system.published(OrderApproved)

Nothing is mocked: the services run on the real dispatcher over
:class:`~seawall.MemoryTransport`, in its strict mode (``serialize=True``, unlike
``memory://``'s default): every envelope and payload is encoded and decoded, so a
message a real broker could not carry fails here. Time is a :class:`~seawall.VirtualClock`
that jumps ahead whenever every task is waiting, so retries, backoff and
deadlines never sleep. A handler exception that ends in a dead letter or a
failure reply is raised again when the ``async with`` block ends (pass
``raise_handler_errors=False`` to inspect :attr:`TestSystem.failures` instead).
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self, TypeVar

from .._clock import VirtualClock, timeout_at
from .._messages.envelope import Message
from .._messages.payload import Payload, major, schema_version
from .._runtime.context import Context
from .._runtime.dispatcher import dead_letter_channel
from .._runtime.service import Service
from .._runtime.system import System
from .._tasks import TaskScope
from .._transport import Capabilities, ChannelSpec, Start, Subscription
from ..resilience import CallPolicy, Policies
from ..transports.memory import MemoryTransport

__all__ = ["HandlerFailure", "RecordingTransport", "TestSystem"]

P = TypeVar("P", bound=Payload)


@dataclass(frozen=True)
class HandlerFailure:
    """One handler exception seen by the test system."""

    handler: str
    message: Message
    error: BaseException
    final: bool
    """True when no retry followed: the message was dead-lettered or answered with a failure."""


def _is_a(message: Message, cls: type[Payload]) -> bool:
    """Whether ``message`` carries a ``cls`` in ``cls``'s major version (or names none)."""
    if message.type != cls.type_name:
        return False
    version = schema_version(message.dataschema)
    return version is None or major(version) == major(cls.type_version)


class RecordingTransport:
    """A transport wrapper that remembers every publish, in order."""

    def __init__(self, inner: MemoryTransport) -> None:
        self.inner = inner
        self.records: list[tuple[str, Message]] = []

    @property
    def capabilities(self) -> Capabilities:
        return self.inner.capabilities

    async def declare(self, spec: ChannelSpec) -> None:
        await self.inner.declare(spec)

    async def delete(self, channel: str, *, group: str | None = None) -> None:
        await self.inner.delete(channel, group=group)

    async def publish(
        self,
        channel: str,
        message: Message,
        *,
        not_before: float | None = None,
        priority: int = 0,
    ) -> None:
        await self.inner.publish(channel, message, not_before=not_before, priority=priority)
        self.records.append((channel, message))

    async def subscribe(
        self,
        channel: str,
        *,
        group: str,
        prefetch: int = 64,
        start: Start = "earliest",
        idle_expiry: float | None = None,
    ) -> Subscription:
        return await self.inner.subscribe(
            channel, group=group, prefetch=prefetch, start=start, idle_expiry=idle_expiry
        )

    async def close(self) -> None:
        await self.inner.close()


class TestSystem:
    """Runs services in-process for tests; see the module docstring."""

    __test__ = False  # not a pytest test class

    def __init__(
        self,
        *services: Service,
        clock: VirtualClock | None = None,
        raise_handler_errors: bool = True,
        grace: float = 10.0,
        policies: Policies | CallPolicy | None = None,
        **memory_options: Any,
    ) -> None:
        self.clock = clock or VirtualClock()
        # strict whatever memory:// defaults to: a message that would not survive a real
        # broker (one that does not encode, or does not decode as its handler's class) fails
        memory_options.setdefault("serialize", True)
        self.memory = MemoryTransport(clock=self.clock, **memory_options)
        self.transport = RecordingTransport(self.memory)
        self.failures: list[HandlerFailure] = []
        self.raise_handler_errors = raise_handler_errors
        self.system = System(
            *services,
            transport=self.transport,
            clock=self.clock,
            grace=grace,
            on_failure=self._record_failure,
            policies=policies,
            registry=False,  # no heartbeats: the virtual clock would never find the system idle
        )
        self._stack = contextlib.AsyncExitStack()

    def _record_failure(
        self, handler: str, message: Message, error: BaseException, final: bool
    ) -> None:
        self.failures.append(HandlerFailure(handler, message, error, final))

    async def __aenter__(self) -> Self:
        tasks = await self._stack.enter_async_context(TaskScope())
        tasks.create_task(self.clock.run_autojump())
        await self._stack.enter_async_context(self.system)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._stack.__aexit__(exc_type, exc, tb)
        if exc is None and self.raise_handler_errors:
            final = [f for f in self.failures if f.final]
            if final:
                first = final[0]
                first.error.add_note(
                    f"raised by handler {first.handler} on message {first.message.id}; "
                    f"{len(final)} handler failure(s) in total (TestSystem.failures)"
                )
                raise first.error

    def context(self, source: str = "test") -> Context:
        """A context to send, publish and request from the test."""
        return self.system.context(source)

    async def settle(self, timeout: float = 300.0) -> None:
        """Wait (in virtual time) until every message published so far is settled."""
        clock = self.clock
        try:
            async with timeout_at(clock, clock.time() + timeout):
                while self._busy():
                    for _ in range(5):  # let runnable work go first
                        await asyncio.sleep(0)
                    if self._busy():
                        # sleep on the virtual clock up to its next timer, so autojump moves on
                        due = clock.next_deadline()
                        await clock.sleep(0.001 if due is None else max(due - clock.time(), 0.0))
        except TimeoutError:
            raise TimeoutError(
                f"settle(): the system was still busy after {timeout:g} s of virtual time "
                f"({self._busy_report()}); a handler may wait on something that never "
                "comes, or a retry loop never ends: raise the timeout or look at those handlers"
            ) from None

    def _busy_report(self) -> str:
        busy = [d.name for d in self.system.dispatchers if d.busy]
        return (
            f"{self.memory.unsettled()} messages unsettled, {len(self.system.node.tasks)} "
            f"background tasks, {len(self.system.node.sends)} sends waiting; busy consumers: "
            f"{', '.join(busy) or 'none'}"
        )

    def _busy(self) -> bool:
        return bool(
            self.memory.unsettled()
            or len(self.system.node.tasks)
            or len(self.system.node.sends)
            or any(d.busy for d in self.system.dispatchers)
        )

    def messages(
        self, channel: str | None = None, type: type[Payload] | None = None
    ) -> list[Message]:
        """Messages published so far, optionally only to ``channel`` or of ``type``.

        ``type`` matches its type name and its major version (a message that names
        no version matches any).
        """
        return [
            m
            for c, m in self.transport.records
            if (channel is None or c == channel) and (type is None or _is_a(m, type))
        ]

    def sent(self, type: type[P], channel: str | None = None) -> list[P]:
        """Decoded payloads of ``type`` (in its major version) that were sent or published."""
        node = self.system.node
        return [node.decode(m, type) for m in self.messages(channel, type)]  # type: ignore[misc]

    def published(self, type: type[P]) -> list[P]:
        """Decoded events of ``type`` that were published (alias of :meth:`sent`)."""
        return self.sent(type)

    def dead_letters(self, group: str) -> list[Message]:
        """Messages dead-lettered by consumer group ``group``."""
        return self.messages(dead_letter_channel(group))
