"""System lifecycle: supervision of consumers, escalation, errors at the edges."""

from __future__ import annotations

import logging

import pytest

from seawall import (
    Command,
    ConfigurationError,
    ConnectionLost,
    Context,
    Document,
    MemoryTransport,
    RestartIntensity,
    Service,
    Subscription,
    SupervisorGaveUp,
    System,
    Transport,
)
from seawall._transport import StartAt
from seawall.testing import TestSystem
from seawall.testing._delivery import wait_until


class Ping(Command, frozen=True):
    n: int


class Pong(Document, frozen=True):
    n: int


def pinger() -> Service:
    svc = Service("pinger")

    @svc.command
    async def ping(cmd: Ping) -> Pong:
        return Pong(n=cmd.n)

    return svc


class FlakyBroker(MemoryTransport):
    """A memory broker whose subscribe fails while ``down`` is set."""

    def __init__(self) -> None:
        super().__init__()
        self.down = False
        self.subscribes = 0

    async def subscribe(
        self,
        channel: str,
        *,
        group: str,
        prefetch: int = 64,
        start: StartAt = "earliest",
        idle_expiry: float | None = None,
    ) -> Subscription:
        self.subscribes += 1
        if self.down and not channel.startswith("_inbox"):
            raise ConnectionLost(f"broker unreachable while subscribing to {channel}")
        return await super().subscribe(
            channel, group=group, prefetch=prefetch, start=start, idle_expiry=idle_expiry
        )


FAST = RestartIntensity(max_restarts=3, within=60, initial_backoff=0.01, max_backoff=0.02)


async def test_consumer_that_cannot_subscribe_escalates_loudly(
    caplog: pytest.LogCaptureFixture,
) -> None:
    broker = FlakyBroker()
    broker.down = True
    with pytest.raises(SupervisorGaveUp, match="pinger") as caught:
        async with System(pinger(), transport=broker, intensity=FAST):
            pytest.fail("the system must not start while its consumers cannot subscribe")
    assert "crashed 4 times within 60 s" in str(caught.value)
    assert broker.subscribes >= 4
    assert any(r.levelno == logging.CRITICAL for r in caplog.records)


async def test_link_failures_restart_the_consumer_until_intensity_is_exceeded() -> None:
    broker = FlakyBroker()
    system = System(pinger(), transport=broker, intensity=FAST)

    async def run() -> None:
        async with system:
            reply = await system.context().request("pinger", Ping(n=1), returns=Pong, timeout=5)
            assert reply.n == 1
            broker.down = True
            broker.disconnect()  # the dispatcher resubscribes, fails, backs off, fails...
            await wait_until(lambda: not system.healthy, 5, "the supervisor to give up")

    with pytest.raises(SupervisorGaveUp, match="crashed 4 times"):
        await run()
    assert not system.healthy


async def test_recovers_when_the_broker_comes_back_within_intensity() -> None:
    broker = FlakyBroker()
    async with System(pinger(), transport=broker, intensity=FAST) as system:
        broker.down = True
        broker.disconnect()
        await wait_until(lambda: broker.subscribes >= 4, 5, "two failed resubscribes")
        broker.down = False
        reply = await system.context().request("pinger", Ping(n=2), returns=Pong, timeout=5)
        assert reply.n == 2
        assert system.healthy


async def test_an_error_in_the_body_comes_out_unwrapped() -> None:
    with pytest.raises(KeyError, match="mine"):
        async with System(pinger()):
            raise KeyError("mine")


async def test_sending_something_that_is_not_a_payload_is_refused_clearly() -> None:
    async with TestSystem(pinger()) as system:
        with pytest.raises(ConfigurationError, match="got a str"):
            await system.context().send("pinger", "ping!")  # type: ignore[arg-type]
        # the system keeps working
        assert (await system.context().request("pinger", Ping(n=3), returns=Pong)).n == 3


async def test_a_request_to_an_overfull_channel_fails_with_the_error() -> None:
    from seawall import ChannelFull, ChannelSpec

    async with TestSystem(publish_timeout=1.0) as system:
        await system.transport.declare(ChannelSpec(name="nobody", max_messages=1))
        await system.context().send("nobody", Ping(n=1))  # nobody reads; the channel is full
        with pytest.raises(ChannelFull, match="'nobody' holds 1 unsettled"):
            await system.context().request("nobody", Ping(n=2), returns=Pong)


def test_transport_url_must_be_known() -> None:
    with pytest.raises(ConfigurationError, match="no transport for URL 'kafka://x'"):
        System(pinger(), transport="kafka://x")


def test_memory_transport_is_a_transport() -> None:
    assert isinstance(MemoryTransport(), Transport)


class Other(Command, frozen=True):
    n: int


async def test_handler_gets_context_of_the_message() -> None:
    svc = Service("echo")
    seen: list[tuple[str, str | None, str | None]] = []

    @svc.command
    async def echo(cmd: Other, ctx: Context) -> None:
        assert ctx.message is not None
        seen.append((ctx.service, ctx.message.causationid, ctx.message.correlationid))

    async with TestSystem(svc) as system:
        await system.context().request("echo", Other(n=1))
        [request] = system.messages("echo")
    assert seen == [("echo", None, request.id)]
