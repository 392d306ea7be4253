"""A system: services running in one process over one transport.

``async with System(orders, kitchen, transport="memory://") as system:``
starts a dispatcher per subscription of every service and the process's reply
inbox, each under one :class:`~seawall._runtime.supervisor.Supervisor`; leaving the
block drains them: stop intake, finish in-flight work within the grace
period, settle, close. :meth:`System.serve` runs until SIGTERM or SIGINT and
then drains the same way; a second Ctrl-C (SIGINT) ends the process at once.

The services of one system share one type registry and one set of upcaster
chains (each service's :meth:`~seawall.Service.upcaster` steps, merged): a
second class for one type name and major version, or two different steps from
one version, is refused when the system is built.

Middleware (:mod:`.middleware`) given to the system wraps every service's own;
its lifespans (:mod:`.lifespan`), then its services', are opened once the
transport is ready and before any consumer starts, and closed after they all
drained. :meth:`System.health` says whether it is live and ready (:mod:`.health`).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Self, TypeVar

from .._clock import Clock, SystemClock, timeout_at
from .._exceptions import ConfigurationError
from .._messages.codec import JSON, Codec
from .._messages.envelope import Message
from .._messages.ids import uuid7
from .._messages.payload import TypeRegistry
from .._messages.upcast import Upcasters
from .._tasks import TaskScope
from .._transport import ChannelSpec, Subscription, Transport
from .._transport.schemes import connect
from ..discovery.announcement import STARTUP_GRACE, BreakerState
from .context import Context
from .dispatcher import Dispatcher, FailureHook, Stats
from .interrupts import interrupts
from .lifespan import LifespanFunction, check_lifespan
from .middleware import AroundHandle, AroundSend, Middleware
from .node import Node
from .service import Service
from .service import Subscription as Handlers

if TYPE_CHECKING:
    from ..resilience import CallPolicy, Policies
    from .health import Health, Phase
    from .presence import Presence
    from .supervisor import RestartIntensity, Supervisor

__all__ = ["System"]

log = logging.getLogger("seawall.system")

AH = TypeVar("AH", bound=AroundHandle)
AS = TypeVar("AS", bound=AroundSend)
L = TypeVar("L", bound=LifespanFunction)


class System:
    """Runs services in this process; the unit you start, stop and supervise."""

    def __init__(
        self,
        *services: Service,
        transport: Transport | str = "memory://",
        clock: Clock | None = None,
        codec: Codec = JSON,
        instance: str | None = None,
        grace: float = 10.0,
        intensity: RestartIntensity | None = None,
        on_failure: FailureHook | None = None,
        middleware: Sequence[Middleware] = (),
        lifespan: Sequence[LifespanFunction] = (),
        policies: Policies | CallPolicy | None = None,
        registry: bool = True,
        registry_grace: float = STARTUP_GRACE,
        name: str = "",
    ) -> None:
        self.services = list(services)
        self.policies = _policies(policies, self.services)
        """Call policies of ``ctx.request`` and ``ctx.send`` (see :mod:`seawall.resilience`)."""
        self.name = name
        """The system's name, as announced (``seawall.toml``'s name, or empty)."""
        self.announces = registry
        """Announce on the registry channel and listen to it (see :mod:`.presence`)."""
        self.registry_grace = registry_grace
        """Seconds of listening before a request to a service never announced is refused
        (:data:`seawall.discovery.announcement.STARTUP_GRACE`: peers starting together)."""
        self.presence: Presence | None = None
        self.transport_url = transport if isinstance(transport, str) else None
        """The URL the transport was made from; None when a transport object was given."""
        self.clock = clock or SystemClock()
        self._owns_transport = isinstance(transport, str)
        self.transport = (
            connect(transport, clock=self.clock) if isinstance(transport, str) else transport
        )
        self.codec = codec
        self.instance = instance or uuid7()
        self.grace = grace
        from .supervisor import RestartIntensity  # with the first System, as its Supervisor

        self.intensity = intensity or RestartIntensity()
        self.on_failure = on_failure
        self.registry = TypeRegistry()
        self.upcasters = Upcasters()
        """Every service's upcasters, as one set of chains: a clash between two is refused."""
        for service in self.services:
            for cls in service.payload_types():
                self.registry.register(cls)
            self.upcasters.include(service.upcasters)
        self.dispatchers: list[Dispatcher] = []
        self._stack: contextlib.AsyncExitStack | None = None
        self._node: Node | None = None
        self._supervisor: Supervisor | None = None
        self._inbox_stop = asyncio.Event()
        self._inbox_ready = asyncio.Event()
        self._phase: Phase = "stopped"
        self.handle_layers: list[AroundHandle] = []
        """Around-handle middleware of every handler, outside each service's own."""
        self.send_layers: list[AroundSend] = []
        """Around-send middleware of every send, outside each service's own."""
        self.lifespans: list[LifespanFunction] = []
        self.use(*middleware)
        for service in self.services:
            for each in service.middleware:
                each.attach(self)
        for fn in lifespan:
            self.lifespan(fn)

    def use(self, *middleware: Middleware) -> None:
        """Add :class:`Middleware` objects (before the system starts), after those already added."""
        for each in middleware:
            each.attach(self)
            handle, send = each.layers()
            if handle is not None:
                self.handle_layers.append(handle)
            if send is not None:
                self.send_layers.append(send)

    def around_handle(self, fn: AH) -> AH:
        """Register middleware around every handler call (decorator; before the system starts)."""
        self.handle_layers.append(fn)
        return fn

    def around_send(self, fn: AS) -> AS:
        """Register middleware around every send (decorator; before the system starts)."""
        self.send_layers.append(fn)
        return fn

    def lifespan(self, fn: L) -> L:
        """Register a lifespan of the whole system; handlers reach it with ``ctx.resource(fn)``."""
        check_lifespan(fn, f"system {self.instance}")
        self.lifespans.append(fn)
        return fn

    @property
    def node(self) -> Node:
        if self._node is None:
            raise RuntimeError("the system is not running; use 'async with system:'")
        return self._node

    @property
    def healthy(self) -> bool:
        """False once a supervised part gave up."""
        return self._supervisor is None or self._supervisor.healthy

    def health(self) -> Health:
        """Live (no supervisor gave up) and ready (running, every consumer subscribed), with why."""
        from .health import assess  # for a probe or a status page, not every program

        supervisor = self._supervisor
        gave_up = (
            None if supervisor is None or supervisor.failure is None else str(supervisor.failure)
        )
        unsubscribed = [d.name for d in self.dispatchers if not d.ready.is_set()]
        if self._phase == "running" and not self._inbox_ready.is_set():
            unsubscribed.append(f"{self.instance}:inbox")
        health = assess(self._phase, gave_up, unsubscribed, f"system {self.instance}")
        breakers = self.breakers()
        return health if not breakers else dataclasses.replace(health, breakers=breakers)

    def breakers(self) -> tuple[BreakerState, ...]:
        """The state of every circuit breaker this system holds as a caller, by target."""
        return () if self._node is None else self._node.breaker_states()

    def stats(self) -> dict[str, Stats]:
        """Counters per dispatcher, by dispatcher name."""
        return {d.name: d.stats for d in self.dispatchers}

    def context(
        self, source: str = "client", *, cause: Message | None = None, deadline: float | None = None
    ) -> Context:
        """A context for code outside any handler: a script, a web handler, a test.

        ``cause``: the message its sends continue (their correlation id and trace), e.g. one
        standing for an incoming HTTP request; ``deadline``: the absolute time, on the
        system's clock, by which everything it starts must be done.
        """
        return Context(self.node, source, cause, deadline)

    def _guard_calls(self, node: Node) -> None:
        """Call policies on ``ctx.request`` and ``ctx.send``: loaded on the first start."""
        from ..resilience import Guards
        from .guarded import GuardedCalls

        node.policy_calls = GuardedCalls()
        if self.policies is not None:
            node.guards = Guards(self.policies)
            for service in self.services:
                for target in service.depends_on:
                    node.guards.guard(target)  # its breaker exists before any call

    async def __aenter__(self) -> Self:
        from .supervisor import Supervisor

        stack = contextlib.AsyncExitStack()
        await stack.__aenter__()
        self._phase = "starting"
        stack.callback(setattr, self, "_phase", "stopped")
        try:
            tasks = await stack.enter_async_context(TaskScope())
            self._node = Node(
                transport=self.transport,
                clock=self.clock,
                codec=self.codec,
                registry=self.registry,
                instance=self.instance,
                tasks=tasks,
                upcasters=self.upcasters,
            )
            self._guard_calls(self._node)
            if self._owns_transport:
                stack.push_async_callback(self.transport.close)
            self._node.use_send_layers(
                self.send_layers, {s.name: s.send_layers for s in self.services}
            )
            if self.announces:
                from .presence import Presence  # the registry's reader: loaded on first start

                self.presence = Presence(
                    self._node, self.services, system=self.name, grace=self.registry_grace
                )
                self._node.discovery = self.presence.registry
                if self.policies is not None and self.policies.routes:
                    self._node.routing = self.policies
            await self._declare()
            await self._open_lifespans(stack)
            self._supervisor = await stack.enter_async_context(
                Supervisor(clock=self.clock, intensity=self.intensity, name=self.instance)
            )
            stack.push_async_callback(self._drain)
            self._start()
            await self._wait_ready()
        except BaseException:
            await stack.aclose()
            raise
        self._stack = stack
        self._phase = "running"
        return self

    async def _open_lifespans(self, stack: contextlib.AsyncExitStack) -> None:
        resources = self.node.resources
        for fn in self.lifespans:
            await resources.open(stack, fn, Context(self.node, "system"))
        for service in self.services:
            for fn in service.lifespans:
                await resources.open(stack, fn, Context(self.node, service.name))

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        stack, self._stack = self._stack, None
        if stack is not None:
            await stack.__aexit__(exc_type, exc, tb)

    async def _declare(self) -> None:
        await self.transport.declare(ChannelSpec(name=self.node.inbox, ephemeral=True))
        for service in self.services:
            await self.transport.declare(
                ChannelSpec(
                    name=service.name,
                    partitions=service.partitions,
                    sync_requests=service.sync_requests,
                    requests=service.requests,
                )
            )
        if self.presence is not None:
            await self.presence.declare()

    def _start(self) -> None:
        assert self._supervisor is not None
        self._supervisor.start(f"{self.instance}:inbox", self._run_inbox)
        for service in self.services:
            for spec in service.subscriptions.values():
                dispatcher = self._dispatcher(service, spec)
                self.dispatchers.append(dispatcher)
                self._supervisor.start(dispatcher.name, dispatcher.run)
        if self.presence is not None:
            self.presence.start(self._supervisor, self.dispatchers, self._dispatcher)
        self._answer_inline()

    def _answer_inline(self) -> None:
        """Let requests made here to a ``requests="direct"`` service hosted here run in the
        requester's task (see :meth:`Dispatcher.claim`): only on a transport that can say
        every live member of a channel is of one group (an in-process one, ``memory://``),
        and only without around-send middleware (a request's send layers see it published)."""
        node = self.node
        if getattr(self.transport, "only_group", None) is None or node.send_chains is not None:
            return
        direct = {s.name for s in self.services if s.requests == "direct"}
        for dispatcher in self.dispatchers:
            spec = dispatcher.spec
            if spec.is_command_channel and spec.channel in direct:
                node.inline[spec.channel] = dispatcher

    def _dispatcher(self, service: Service, spec: Handlers) -> Dispatcher:
        return Dispatcher(
            self.node,
            service.name,
            spec,
            grace=self.grace,
            on_failure=self.on_failure,
            around=[*self.handle_layers, *service.handle_layers],
        )

    async def _wait_ready(self) -> None:
        """Return once every dispatcher and the inbox have subscribed."""
        events = [self._inbox_ready, *(d.ready for d in self.dispatchers)]
        while not all(e.is_set() for e in events):
            if not self.healthy:
                assert self._supervisor is not None
                assert self._supervisor.failure is not None
                raise self._supervisor.failure
            await asyncio.sleep(0.001 if any(e.is_set() for e in events) else 0)

    async def _run_inbox(self) -> None:
        node = self.node
        sub = await self.transport.subscribe(node.inbox, group=node.inbox, prefetch=1024)
        self._inbox_ready.set()
        try:
            async with asyncio.TaskGroup() as tasks:
                stop = tasks.create_task(self._inbox_stop.wait())
                reader = tasks.create_task(self._read_inbox(sub))
                await asyncio.wait({stop, reader}, return_when=asyncio.FIRST_COMPLETED)
                stop.cancel()
                reader.cancel()
                if reader.done() and not reader.cancelled():
                    reader.result()  # re-raise a broken link so the supervisor resubscribes
        finally:
            self._inbox_ready.clear()
            await sub.close()

    async def _read_inbox(self, sub: Subscription) -> None:
        node = self.node
        async for delivery in sub:
            if not node.on_inbox(delivery.message):
                log.debug("late or unknown reply %s dropped", delivery.message.id)
            await sub.ack(delivery)

    async def _drain(self) -> None:
        """Stop intake everywhere, let in-flight work finish, then stop the inbox."""
        self._phase = "draining"
        draining = list(self.dispatchers)
        if self.presence is not None:
            await self.presence.leave()  # callers stop routing here at once
            draining += self.presence.dispatchers
        for dispatcher in draining:
            dispatcher.stop()
        supervisor = self._supervisor
        assert supervisor is not None
        if supervisor.healthy:
            with contextlib.suppress(TimeoutError):
                # the dispatchers bound their own drain by the grace period; this is a backstop
                async with timeout_at(self.clock, self.clock.time() + self.grace + 5.0):
                    for dispatcher in draining:
                        await dispatcher.stopped.wait()
        self._inbox_stop.set()
        await supervisor.stop()

    async def serve(self, *, ready: Callable[[], object] | None = None) -> None:
        """Run until SIGTERM or SIGINT, then drain gracefully; a second Ctrl-C exits at once.

        ``ready`` is called once every consumer has subscribed. The second Ctrl-C
        ends the process (status 130) without draining, even after this returned
        (see :mod:`seawall._runtime.interrupts`).
        """
        stop = asyncio.Event()
        second = f"seawall: a second Ctrl-C: system {self.instance} exits now, without draining"
        with interrupts(stop.set, second=second):
            async with self:
                log.info("system %s running %s", self.instance, [s.name for s in self.services])
                if ready is not None:
                    ready()
                await stop.wait()
                log.info(
                    "signal received: draining (grace %.1f s); a second Ctrl-C exits at once",
                    self.grace,
                )


def _policies(given: Policies | CallPolicy | None, services: Sequence[Service]) -> Policies | None:
    """The system's policies (a lone CallPolicy is the default); each dependency needs a breaker."""
    from ..resilience import CallPolicy, Policies

    policies = Policies(default=given) if isinstance(given, CallPolicy) else given
    if policies is not None and not isinstance(policies, Policies):
        raise ConfigurationError(
            f"System policies= takes a Policies or a CallPolicy, got a {type(given).__name__}"
        )
    for service in services:
        for target in service.depends_on:
            if policies is None or policies.for_target(target).breaker is None:
                raise ConfigurationError(
                    f"service {service.name} depends on {target!r}, but no call policy gives "
                    f"{target!r} a circuit breaker, so nothing would ever pause it: pass "
                    f"System(policies=Policies(targets={{{target!r}: CallPolicy(breaker="
                    "BreakerPolicy(...))}))"
                )
    return policies
