"""Expired messages leave a record: dead-lettered with reason ``expired`` by default, or
dropped and counted when the service says so; one-way commands and requests alike."""

from __future__ import annotations

import pytest

from seawall import (
    DLQ_HEADERS,
    Command,
    ConfigurationError,
    Context,
    DeadlineExceeded,
    Document,
    Expired,
    Service,
    Stats,
)
from seawall.testing import TestSystem


class Cook(Command, frozen=True):
    dish: str


class Plated(Document, frozen=True):
    dish: str


def kitchen(*, expired: Expired = "dead-letter", work: float = 5.0) -> tuple[Service, list[str]]:
    """One cook at a time, each dish taking ``work`` seconds: later orders wait their turn."""
    service = Service("kitchen", concurrency=1, expired=expired)
    cooked: list[str] = []

    @service.command
    async def cook(order: Cook, ctx: Context) -> Plated:
        await ctx.sleep(work)
        cooked.append(order.dish)
        return Plated(dish=order.dish)

    return service, cooked


def stats(system: TestSystem) -> Stats:
    return system.system.stats()["kitchen:kitchen/kitchen"]


async def test_an_expired_one_way_command_is_dead_lettered_not_lost() -> None:
    service, cooked = kitchen()
    async with TestSystem(service) as system:
        node, now = system.system.node, system.clock.time()
        await system.context().send("kitchen", Cook(dish="soup"))  # keeps the cook 5 s
        late = node.envelope(Cook(dish="salad"), source="waiter", deadline=now + 1)
        await system.transport.publish("kitchen", late)  # a one-way command: no reply-to
        await system.settle()
        [dead] = system.dead_letters("kitchen")
        counted = stats(system)
    assert cooked == ["soup"]  # the salad was not made after it stopped mattering
    assert dead.id == late.id
    assert set(DLQ_HEADERS) <= set(dead.headers)
    assert dead.headers["seawall-dlq-reason"] == "expired"
    assert dead.headers["seawall-dlq-channel"] == "kitchen"
    assert dead.headers["seawall-dlq-group"] == "kitchen"
    assert dead.headers["seawall-dlq-attempt"] == "1"
    assert "DeadlineExceeded" in dead.headers["seawall-dlq-error"]
    assert f"({late.id}) reached kitchen after its deadline" in dead.headers["seawall-dlq-error"]
    assert (counted.expired, counted.dead_lettered, counted.handled) == (1, 1, 1)


async def test_send_takes_a_deadline() -> None:
    service, cooked = kitchen(work=0.0)
    async with TestSystem(service) as system:
        ctx, now = system.context(), system.clock.time()
        await ctx.send("kitchen", Cook(dish="stale"), deadline=now - 1)
        await ctx.send("kitchen", Cook(dish="fresh"), deadline=now + 60)
        await system.settle()
        [dead] = system.dead_letters("kitchen")
        [sent, _] = system.messages("kitchen")
    assert cooked == ["fresh"]
    assert sent.deadline is not None
    assert sent.deadline.timestamp() == pytest.approx(now - 1)
    assert dead.headers["seawall-dlq-reason"] == "expired"


async def test_the_service_may_drop_expired_messages_instead_counted_in_stats() -> None:
    service, cooked = kitchen(expired="drop")
    async with TestSystem(service) as system:
        ctx, now = system.context(), system.clock.time()
        await ctx.send("kitchen", Cook(dish="soup"))
        await ctx.send("kitchen", Cook(dish="salad"), deadline=now + 1)
        await system.settle()
        assert system.dead_letters("kitchen") == []
        counted = stats(system)
    assert cooked == ["soup"]
    assert (counted.expired, counted.dead_lettered) == (1, 0)


async def test_an_expired_request_is_dead_lettered_too_and_its_requester_told() -> None:
    service, cooked = kitchen()
    async with TestSystem(service) as system:
        ctx = system.context()
        first = ctx.request("kitchen", Cook(dish="soup"), returns=Plated, timeout=60)
        late = ctx.request("kitchen", Cook(dish="salad"), returns=Plated, timeout=1)
        with pytest.raises(DeadlineExceeded):
            await late
        assert await first == Plated(dish="soup")
        await system.settle()
        [dead] = system.dead_letters("kitchen")
    assert cooked == ["soup"]
    assert dead.id == late.request_id
    assert dead.headers["seawall-dlq-reason"] == "expired"


async def test_a_handler_still_running_at_the_deadline_is_dead_lettered_as_expired() -> None:
    """Cut off at its deadline, not failed: no retry, no handler error raised by the test."""
    service, cooked = kitchen(work=10.0)
    async with TestSystem(service) as system:
        ctx = system.context()
        with pytest.raises(DeadlineExceeded):
            await ctx.request("kitchen", Cook(dish="stew"), returns=Plated, timeout=2)
        await system.settle()
        [dead] = system.dead_letters("kitchen")
        counted = stats(system)
    assert cooked == []
    assert dead.headers["seawall-dlq-reason"] == "expired"
    assert "kitchen.cook did not finish" in dead.headers["seawall-dlq-error"]
    assert (counted.expired, counted.failed, counted.retried) == (1, 0, 0)
    assert system.failures == []


def test_an_unknown_expiry_policy_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="expired='keep'; say 'dead-letter'"):
        Service("kitchen", expired="keep")  # type: ignore[arg-type]
