"""A running system on the registry: what it announces, UnknownService, routing.

Real systems over one memory transport on the real clock (heartbeats are one
second apart, so these take a second or two).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from typing import Any

import pytest

from seawall import (
    Command,
    ConfigurationError,
    ConnectionLost,
    Document,
    MemoryTransport,
    Service,
    Subscription,
    System,
    UnknownService,
    VirtualClock,
)
from seawall._runtime.dispatcher import Dispatcher
from seawall.discovery import REGISTRY_CHANNEL, Announcement, Registry


class Ping(Command, frozen=True):
    n: int


class Pong(Document, frozen=True):
    n: int
    by: str


def echo(name: str = "echo", *, delay: float = 0.0) -> Service:
    service = Service(name)

    @service.command
    async def ping(cmd: Ping) -> Pong:
        await asyncio.sleep(delay)
        return Pong(n=cmd.n, by=str(os.getpid()))

    return service


def registry(system: System) -> Registry:
    assert system.presence is not None
    return system.presence.registry


def routed_to(system: System) -> list[Dispatcher]:
    """The dispatchers of the system's own instance channels."""
    assert system.presence is not None
    return system.presence.dispatchers


async def until_live(
    system: System, holds: Callable[[list[Announcement]], object], name: str = "echo"
) -> list[Announcement]:
    """The live announcements of ``name`` once ``holds`` them (the beats come each second)."""
    for _ in range(300):
        live = registry(system).live(name)
        if holds(live):
            return live
        await asyncio.sleep(0.01)
    raise AssertionError(f"the registry never showed {name} as wanted: {live}")


async def until_ready(system: System) -> None:
    roster = registry(system).roster
    for _ in range(300):
        if roster.ready(system.clock.time()):
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the roster never caught up with the registry channel")


async def test_a_system_announces_its_services_and_says_when_it_leaves() -> None:
    transport = MemoryTransport()
    async with System(transport=transport) as watcher:
        async with System(echo(), transport=transport, name="demo") as served:
            reply = await served.context().request("echo", Ping(n=1), returns=Pong)
            assert reply.n == 1
            # the next beat (one a second) carries the load figures
            (seen,) = await until_live(watcher, lambda live: live and live[0].handled == 1)
            assert isinstance(seen, Announcement)
            assert (seen.instance, seen.system, seen.pid) == (served.instance, "demo", os.getpid())
            assert seen.handled == 1
            assert seen.handler_p99_ms > 0
            assert seen.inbox == f"echo.@{served.instance}"
            (handles,) = seen.handles
            assert (handles.channel, handles.types) == ("echo", ("Ping@1.0.0",))
        await asyncio.sleep(0.05)
        assert registry(watcher).live("echo") == []  # leaving: gone before any expiry


async def test_a_request_to_a_service_never_announced_fails_at_once() -> None:
    async with System(echo(), transport=MemoryTransport(), registry_grace=0.0) as system:
        await until_ready(system)
        with pytest.raises(UnknownService, match="'echoo'"):
            system.context().request("echoo", Ping(n=1), returns=Pong)
        assert (await system.context().request("echo", Ping(n=2), returns=Pong)).n == 2


async def test_a_known_but_absent_service_still_gets_its_requests_queued() -> None:
    transport = MemoryTransport()
    async with System(echo(), transport=transport):
        pass  # it ran once, announced itself, and left
    async with System(transport=transport, registry_grace=0.0) as caller:
        await until_ready(caller)  # a fresh caller: it learns "echo" from the replay
        assert registry(caller).live("echo") == []
        reply = caller.context().request("echo", Ping(n=3), returns=Pong, timeout=10)
        await asyncio.sleep(0.1)
        async with System(echo(), transport=transport):
            assert (await reply).n == 3


async def test_routed_requests_reach_the_chosen_instance() -> None:
    transport = MemoryTransport()
    async with (
        System(echo(), transport=transport) as one,
        System(echo(), transport=transport) as two,
        System(transport=transport) as caller,
    ):
        both = {one.instance, two.instance}
        await until_live(caller, lambda live: {a.instance for a in live} == both)
        ctx = caller.context()
        for route in ("round-robin", "least-outstanding", "lowest-latency", "sticky"):
            assert (await ctx.request("echo", Ping(n=4), returns=Pong, route=route)).n == 4
        routed = [d.stats.handled for s in (one, two) for d in routed_to(s)]
        assert sum(routed) == 4
        assert all(n >= 1 for n in routed)  # round robin reached both
        assert sum(d.stats.handled for s in (one, two) for d in s.dispatchers) == 0
        replies = await ctx.gather("echo", Ping(n=5), returns=Pong, timeout=5, route="broadcast")
        assert len(replies) == 2
        with pytest.raises(ConfigurationError, match="broadcast"):
            ctx.request("echo", Ping(n=6), route="broadcast")


class LostRegistry(MemoryTransport):
    """A memory broker on which the registry channels cannot be read."""

    async def subscribe(self, channel: str, **options: Any) -> Subscription:
        if channel.startswith(REGISTRY_CHANNEL):
            raise ConnectionLost(f"channel {channel!r} is gone")
        return await super().subscribe(channel, **options)


async def test_a_failing_registry_never_takes_the_system_down() -> None:
    clock = VirtualClock()
    jumping = asyncio.create_task(clock.run_autojump())
    try:
        transport = LostRegistry(clock=clock)
        async with System(echo(), transport=transport, clock=clock) as system:
            await clock.sleep(120)  # the reader fails on and on, backing off
            assert system.healthy
            assert (await system.context().request("echo", Ping(n=7), returns=Pong)).n == 7
    finally:
        jumping.cancel()
