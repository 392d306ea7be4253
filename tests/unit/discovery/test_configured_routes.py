"""Routing strategies from the call policies, and what each instance says it sends to.

Real systems over one memory transport on the real clock, as in
``test_system_registry`` (heartbeats are a second apart: a second or two each).
Which instance took a request is read from the dispatchers of the instances' own
channels: a routed request is handled there, a shared one on the service's channel.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence

import msgspec
import pytest
from tests.unit.discovery.test_system_registry import (
    Ping,
    Pong,
    echo,
    registry,
    routed_to,
    until_live,
)

from seawall import (
    Command,
    ConfigurationError,
    Context,
    Document,
    MemoryTransport,
    Overloaded,
    Service,
    System,
)
from seawall._cli.ps import calls_between
from seawall.console.topology import RegistryWatch
from seawall.discovery import Announcement, Handles
from seawall.resilience import BreakerPolicy, CallPolicy, Policies
from seawall.testing import TestSystem


def handled(systems: Sequence[System]) -> tuple[list[int], list[int]]:
    """Requests each instance took on its own channel, and on the shared one."""
    routed = [sum(d.stats.handled for d in routed_to(s)) for s in systems]
    shared = [sum(d.stats.handled for d in s.dispatchers) for s in systems]
    return routed, shared


@contextlib.asynccontextmanager
async def two_and_a_caller(
    policies: Policies | CallPolicy, *, delay: float = 0.0
) -> AsyncIterator[tuple[System, System, System]]:
    transport = MemoryTransport()
    async with (
        System(echo(delay=delay), transport=transport) as one,
        System(echo(delay=delay), transport=transport) as two,
        System(transport=transport, policies=policies) as caller,
    ):
        both = {one.instance, two.instance}
        await until_live(caller, lambda live: {a.instance for a in live} == both)
        yield one, two, caller


async def test_a_configured_least_outstanding_route_spreads_requests_without_route() -> None:
    # a bulkhead too, so that the requests take the guarded path
    policies = Policies(targets={"echo": CallPolicy(route="least-outstanding", max_outstanding=50)})
    async with two_and_a_caller(policies, delay=0.05) as (one, two, caller):
        ctx = caller.context()
        replies = [ctx.request("echo", Ping(n=n), returns=Pong) for n in range(6)]
        assert [r.n for r in await asyncio.gather(*replies)] == list(range(6))
        routed, shared = handled([one, two])
        assert (routed, shared) == ([3, 3], [0, 0])  # outstanding counted: three each
        router = registry(caller).router
        assert [router.outstanding(s.instance) for s in (one, two)] == [0, 0]


async def test_a_configured_sticky_route_keeps_each_key_on_one_instance() -> None:
    async with two_and_a_caller(CallPolicy(route="sticky")) as (one, two, caller):
        ctx = caller.context()
        for key in ("k-1", "k-2", "k-3", "k-4", "k-5", "k-6"):
            before, _ = handled([one, two])
            for n in range(3):
                await ctx.request("echo", Ping(n=n), returns=Pong, key=key)
            after, shared = handled([one, two])
            # all three on one instance, the one the router picks for the key
            assert sorted(b - a for a, b in zip(before, after, strict=True)) == [0, 3]
            assert shared == [0, 0]
        with pytest.raises(ConfigurationError, match=r"no key=.*'sticky'.*pass key="):
            ctx.request("echo", Ping(n=0), returns=Pong)
        with pytest.raises(ConfigurationError, match=r"no key=.*'sticky'"):
            await ctx.send("echo", Ping(n=0))


async def test_a_call_s_route_wins_over_the_configured_one() -> None:
    policies = Policies(
        default=CallPolicy(route="round-robin"), targets={"other": CallPolicy(route="shared")}
    )
    async with two_and_a_caller(policies) as (one, two, caller):
        ctx = caller.context()
        for n in range(4):
            await ctx.request("echo", Ping(n=n), returns=Pong)
        assert handled([one, two]) == ([2, 2], [0, 0])  # the default's round robin
        await ctx.request("echo", Ping(n=9), returns=Pong, route="shared")
        await ctx.send("echo", Ping(n=10), route="shared")
        await ctx.request("echo", Ping(n=11), returns=Pong, policy=CallPolicy(route="shared"))
        for _ in range(100):
            if sum(handled([one, two])[1]) == 3:
                break
            await asyncio.sleep(0.01)
        routed, shared = handled([one, two])
        assert (routed, sum(shared)) == ([2, 2], 3)


async def test_a_target_s_own_route_wins_over_the_default() -> None:
    policies = Policies(
        default=CallPolicy(route="least-outstanding"), targets={"echo": CallPolicy(route="shared")}
    )
    async with two_and_a_caller(policies) as (one, two, caller):
        await caller.context().request("echo", Ping(n=1), returns=Pong)
        routed, shared = handled([one, two])
        assert (routed, sum(shared)) == ([0, 0], 1)


async def test_a_system_without_the_registry_sends_configured_routes_to_the_shared_channel() -> (
    None
):
    async with TestSystem(echo(), policies=CallPolicy(route="least-outstanding")) as system:
        assert (await system.context().request("echo", Ping(n=1), returns=Pong)).n == 1
        with pytest.raises(ConfigurationError, match="does not listen to the registry"):
            system.context().request("echo", Ping(n=2), route="least-outstanding")


async def test_a_routed_call_is_guarded_as_a_call_to_its_service() -> None:
    # one outstanding call to echo in all: the second is shed, though round robin sent
    # it to the other instance (a guard per instance channel would have let it through)
    policy = CallPolicy(route="round-robin", max_outstanding=1, overflow="shed")
    async with two_and_a_caller(Policies(targets={"echo": policy}), delay=0.2) as (*_, caller):
        ctx = caller.context()
        first = ctx.request("echo", Ping(n=1), returns=Pong)
        with pytest.raises(Overloaded):
            ctx.request("echo", Ping(n=2), returns=Pong)
        with pytest.raises(Overloaded):
            await ctx.send("echo", Ping(n=3))
        assert (await first).n == 1
        guards = caller._node.guards if caller._node is not None else None
        assert guards is not None
        assert list(guards.by_target) == ["echo"]


def test_bad_routes_in_a_policy_are_refused_with_what_to_do() -> None:
    with pytest.raises(ConfigurationError, match=r"CallPolicy route: unknown route 'fastest'.*"):
        CallPolicy(route="fastest")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="least-outstanding"):
        Policies(targets={"echo": CallPolicy(route="Sticky")})  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match=r"broadcast.*ctx.send\(\.\.\., route='broadcast'"):
        CallPolicy(route="broadcast")
    with pytest.raises(ConfigurationError, match="Policies default is a str"):
        Policies(default="least-outstanding")  # type: ignore[arg-type]


def test_an_instance_channel_takes_its_service_s_policy() -> None:
    breaker = BreakerPolicy(window=4, minimum_calls=2)
    policies = Policies(
        default=CallPolicy(timeout=1.0),
        targets={"echo": CallPolicy(route="sticky", breaker=breaker), "echo.@b": CallPolicy()},
    )
    assert policies.for_target("echo.@a") == CallPolicy(
        timeout=1.0, route="sticky", breaker=breaker
    )
    assert policies.for_target("echo.@b") == CallPolicy(timeout=1.0)  # its own
    assert policies.for_target("other") == CallPolicy(timeout=1.0)
    assert policies.route_for("echo") == "sticky"
    assert policies.route_for("other") is None
    assert policies.routes
    assert not Policies(default=CallPolicy(route="shared")).routes


def front() -> Service:
    """Calls echo, publishes its own events, and declares a dependency on audit."""
    service = Service("front", depends_on=["audit"])

    @service.command
    async def ping(cmd: Ping, ctx: Context) -> Pong:
        reply = await ctx.request("echo", Ping(n=cmd.n), returns=Pong)
        await ctx.publish(Pong(n=cmd.n, by="front"))
        return reply

    return service


BREAKER_ON_AUDIT = Policies(targets={"audit": CallPolicy(breaker=BreakerPolicy())})
"""front depends on audit, which needs a breaker."""


class Audit(Command, frozen=True):
    n: int


class Seen(Document, frozen=True):
    n: int


def audit() -> Service:
    service = Service("audit")

    @service.command
    async def note(cmd: Audit) -> Seen:
        return Seen(n=cmd.n)

    return service


async def test_heartbeats_say_what_each_service_sends_to() -> None:
    transport = MemoryTransport()
    async with (
        System(echo(), audit(), transport=transport) as backend,
        System(front(), transport=transport, policies=BREAKER_ON_AUDIT) as system,
    ):
        assert (await system.context().request("front", Ping(n=1), returns=Pong)).n == 1

        def sent(live: list[Announcement]) -> bool:
            return bool(live) and "echo" in live[0].sends_to

        (seen,) = await until_live(backend, sent, "front")
        assert seen.sends_to == ("audit", "echo", "front.events")  # declared, and sent
        (quiet,) = registry(backend).live("echo")
        assert quiet.sends_to == ()
        lines = calls_between([seen, quiet, *registry(backend).live("audit")])
        assert lines == ["front -> audit, echo, front.events"]


async def test_the_console_draws_who_calls_whom() -> None:
    transport = MemoryTransport()
    async with (
        System(echo(), transport=transport),
        System(front(), transport=transport, policies=BREAKER_ON_AUDIT) as system,
    ):
        assert (await system.context().request("front", Ping(n=1), returns=Pong)).n == 1
        wanted = {"from": "front", "to": "echo", "kind": "sends"}
        async with RegistryWatch(transport) as watch:
            for _ in range(300):  # the next beat (one a second) says it
                if wanted in watch.snapshot()["arrows"]:
                    break
                await asyncio.sleep(0.01)
            arrows = watch.snapshot()["arrows"]
        assert wanted in arrows
        assert {"from": "echo", "to": "echo", "kind": "handles"} in arrows


def test_the_dependency_graph_names_the_services_that_handle_each_channel() -> None:
    def beat(service: str, handles: tuple[Handles, ...], sends_to: tuple[str, ...]) -> Announcement:
        return Announcement(service=service, instance=f"{service}-1", handles=handles,
                            sends_to=sends_to)  # fmt: skip

    orders = beat(
        "orders", (Handles(channel="orders", group="orders"),), ("kitchen", "orders.events")
    )
    kitchen = beat("kitchen", (Handles(channel="kitchen", group="kitchen"),), ())
    billing = beat(
        "billing", (Handles(channel="orders.events", group="billing"),), ("payments", "orders")
    )
    assert calls_between([orders, kitchen, billing]) == [
        "billing -> orders, payments",
        "orders -> kitchen, orders.events (billing)",
    ]


def test_a_heartbeat_from_before_sends_to_still_reads() -> None:
    old = {"service": "ledger", "instance": "i-1", "host": "h", "pid": 7, "in_flight": 2}
    for encode, decode in (
        (msgspec.json.encode, msgspec.json.decode),
        (msgspec.msgpack.encode, msgspec.msgpack.decode),
    ):
        beat = decode(encode(old), type=Announcement)
        assert (beat.service, beat.pid, beat.in_flight, beat.sends_to) == ("ledger", 7, 2, ())
