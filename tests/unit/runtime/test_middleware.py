"""Middleware around handlers and sends, and lifespans: order, outcome, resources."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from seawall import (
    Command,
    ConfigurationError,
    Context,
    Document,
    Event,
    Handling,
    Health,
    MemoryTransport,
    Middleware,
    NextHandle,
    NextSend,
    Outgoing,
    RestartIntensity,
    RetryPolicy,
    Service,
    ServiceError,
    System,
)
from seawall.testing import TestSystem
from seawall.testing._delivery import wait_until


class Ping(Command, frozen=True):
    n: int


class Pong(Document, frozen=True):
    n: int


class Pinged(Event, frozen=True):
    n: int


def pinger(log: list[str]) -> Service:
    svc = Service("pinger", retry=RetryPolicy(max_attempts=2, initial_backoff=0.1))

    @svc.command
    async def ping(cmd: Ping, ctx: Context) -> Pong:
        log.append(f"handler {cmd.n}")
        if cmd.n < 0:
            raise ValueError("negative")
        await ctx.publish(Pinged(n=cmd.n))
        return Pong(n=cmd.n)

    return svc


class Recorder(Middleware):
    """Records what it wraps, under a name, to check order."""

    def __init__(self, name: str, log: list[str]) -> None:
        self.name, self.log = name, log

    async def handle(self, call: Handling, call_next: NextHandle) -> object:
        self.log.append(f"{self.name} in {call.handler} attempt {call.attempt}")
        try:
            return await call_next(call)
        except Exception as exc:
            outcome = call.outcome(exc)
            assert outcome is not None
            self.log.append(f"{self.name} failed: {outcome.action} {outcome.reason}".rstrip())
            raise
        finally:
            self.log.append(f"{self.name} out")

    async def send(self, out: Outgoing, call_next: NextSend) -> None:
        self.log.append(f"{self.name} sends {out.kind} {out.message.type} to {out.channel}")
        await call_next(out.replace(message=out.message))


async def test_layers_run_in_order_system_outside_service() -> None:
    log: list[str] = []
    svc = pinger(log)

    @svc.around_handle
    async def inner(call: Handling, call_next: NextHandle) -> object:
        log.append("service layer")
        assert call.context.message is call.message
        return await call_next(call)

    ts = TestSystem(svc)
    ts.system.use(Recorder("outer", log), Recorder("second", log))
    async with ts:
        reply = await ts.context().request("pinger", Ping(n=1), returns=Pong)
        await ts.settle()
    assert reply == Pong(n=1)
    handling = [line for line in log if "sends" not in line]
    assert handling == [
        "outer in pinger.ping attempt 1",
        "second in pinger.ping attempt 1",
        "service layer",
        "handler 1",
        "second out",
        "outer out",
    ]
    sends = [line for line in log if "sends" in line]
    assert sends == [
        "outer sends request Ping to pinger",
        "second sends request Ping to pinger",
        "outer sends publish Pinged to pinger.events",
        "second sends publish Pinged to pinger.events",
    ]


async def test_a_layer_sees_the_fate_of_a_failed_attempt_before_it_unwinds() -> None:
    log: list[str] = []
    ts = TestSystem(pinger(log), raise_handler_errors=False)
    ts.system.use(Recorder("mw", log))
    async with ts:
        await ts.context().send("pinger", Ping(n=-1))
        await ts.settle()
    failed = [line for line in log if "failed" in line]
    assert failed == ["mw failed: retry", "mw failed: dead-letter handler-error"]
    assert [line for line in log if "attempt" in line][-1].endswith("attempt 2")
    assert len(ts.dead_letters("pinger")) == 1


async def test_a_send_layer_may_change_the_message() -> None:
    svc = Service("listener")
    seen: list[str | None] = []

    @svc.subscribe("pinger.events")
    async def on_pinged(event: Pinged, ctx: Context) -> None:
        assert ctx.message is not None
        seen.append(ctx.message.subject)

    ts = TestSystem(svc)

    @ts.system.around_send
    async def stamp(out: Outgoing, call_next: NextSend) -> None:
        message = out.message
        await call_next(out.replace(message=type(message)(**{**_fields(message), "subject": "x"})))

    async with ts:
        await ts.context().publish(Pinged(n=1), channel="pinger.events")
        await ts.settle()
    assert seen == ["x"]


def _fields(message: object) -> dict[str, object]:
    import msgspec

    return msgspec.structs.asdict(message)  # type: ignore[arg-type]


class Pool:
    def __init__(self) -> None:
        self.open = True
        self.queries = 0


async def test_lifespans_open_before_handlers_and_close_after_drain() -> None:
    events: list[str] = []
    svc = Service("db-user")

    @svc.lifespan
    async def pool() -> AsyncIterator[Pool]:
        events.append("pool open")
        made = Pool()
        yield made
        made.open = False
        events.append("pool closed")

    @svc.command
    async def query(cmd: Ping, ctx: Context) -> Pong:
        db = ctx.resource(pool)
        assert db.open
        db.queries += 1
        return Pong(n=db.queries)

    async def audit(ctx: Context) -> AsyncIterator[str]:
        events.append(f"audit open for {ctx.service}")
        yield "audit"
        events.append("audit closed")

    system = System(svc, lifespan=[audit])
    async with system:
        assert events == ["audit open for system", "pool open"]
        client = system.context()
        assert await client.request("db-user", Ping(n=0), returns=Pong) == Pong(n=1)
        assert client.resource(audit) == "audit"
    assert events[-2:] == ["pool closed", "audit closed"]
    with pytest.raises(ServiceError, match="not an open lifespan"):
        client.resource(pool)


def test_a_lifespan_must_be_an_async_generator_or_context_manager_factory() -> None:
    svc = Service("bad")

    async def opens(ctx: Context) -> None:
        return None

    with pytest.raises(ConfigurationError, match="async generator"):
        svc.lifespan(opens)  # type: ignore[arg-type]


async def test_a_failing_lifespan_stops_the_start_and_closes_the_others() -> None:
    closed: list[str] = []

    async def first() -> AsyncIterator[None]:
        yield
        closed.append("first")

    async def second() -> AsyncIterator[None]:
        raise RuntimeError("database unreachable")
        yield

    with pytest.raises(RuntimeError, match="database unreachable"):
        async with System(lifespan=[first, second]):
            pass
    assert closed == ["first"]


async def test_health_follows_the_system() -> None:
    system = System(pinger([]))
    assert system.health().ready is False
    async with system:
        health = system.health()
        assert health == Health(live=True, ready=True)
    assert system.health().ready is False


async def test_a_lost_link_is_not_ready_until_the_consumers_subscribed_again() -> None:
    broker = MemoryTransport()
    intensity = RestartIntensity(max_restarts=5, initial_backoff=0.3)
    async with System(pinger([]), transport=broker, intensity=intensity) as system:
        broker.disconnect()
        await wait_until(lambda: not system.health().ready, 5.0, "not ready")
        health = system.health()
        assert health.live
        assert "pinger:pinger/pinger is not subscribed" in health.reasons
        await wait_until(lambda: system.health().ready, 5.0, "ready again")


async def test_a_consumer_whose_link_broke_is_not_subscribed_while_it_drains() -> None:
    # A broken link drains the work in flight (up to the grace period) before the
    # supervisor subscribes again; the consumer is not subscribed during that drain.
    broker = MemoryTransport()
    started, release = asyncio.Event(), asyncio.Event()
    svc = Service("slow")

    @svc.command
    async def ping(cmd: Ping, ctx: Context) -> None:
        started.set()
        await release.wait()

    intensity = RestartIntensity(max_restarts=5, initial_backoff=0.3)
    async with System(svc, transport=broker, intensity=intensity) as system:
        await system.context().send("slow", Ping(n=1))
        await asyncio.wait_for(started.wait(), 5.0)
        broker.disconnect()
        await wait_until(lambda: not system.health().ready, 5.0, "not ready")
        try:
            assert "slow:slow/slow is not subscribed" in system.health().reasons
        finally:
            release.set()
        await wait_until(lambda: system.health().ready, 5.0, "ready again")
