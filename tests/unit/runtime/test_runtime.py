"""The service runtime on the test system: interaction styles, deadlines, errors."""

from __future__ import annotations

import asyncio
import gc
import itertools
import sys
from typing import Any

import msgspec
import pytest

from seawall import (
    Command,
    Context,
    DeadlineExceeded,
    Document,
    Event,
    RemoteError,
    RetryPolicy,
    Service,
    System,
    VirtualClock,
)
from seawall._runtime.replies import Failure
from seawall.testing import RecordingTransport, TestSystem
from seawall.transports.memory import MemoryTransport


class Quote(Command, frozen=True):
    item: str


class Price(Document, frozen=True):
    item: str
    cents: int


class Ordered(Event, frozen=True):
    item: str


class Notify(Command, frozen=True):
    text: str


def shop() -> tuple[Service, list[str]]:
    svc = Service("shop")
    notes: list[str] = []

    @svc.command
    async def quote(cmd: Quote, ctx: Context) -> Price:
        if cmd.item == "bomb":
            raise ValueError("cannot price a bomb")
        await ctx.publish(Ordered(item=cmd.item))
        return Price(item=cmd.item, cents=100 * len(cmd.item))

    @svc.command
    async def notify(cmd: Notify) -> None:
        notes.append(cmd.text)

    return svc, notes


async def test_request_response() -> None:
    svc, _ = shop()
    async with TestSystem(svc) as system:
        price = await system.context().request("shop", Quote(item="tea"), returns=Price)
    assert price == Price(item="tea", cents=300)


async def test_a_requester_in_this_process_is_answered_without_the_broker() -> None:
    svc, _ = shop()
    async with TestSystem(svc) as system:
        price = await system.context().request("shop", Quote(item="tea"), returns=Price)
        channels = [channel for channel, _ in system.transport.records]
    assert price == Price(item="tea", cents=300)
    assert "shop" in channels  # the request itself went through the broker
    assert not [c for c in channels if c.startswith("_inbox.")], channels


async def test_the_reply_table_keeps_no_entry_after_a_request_is_answered_or_fails() -> None:
    svc, _ = shop()
    async with TestSystem(svc, raise_handler_errors=False) as system:
        ctx, table = system.context(), system.system.node.replies
        assert (await ctx.request("shop", Quote(item="tea"), returns=Price)).cents == 300
        assert len(table) == 0  # the reply took its entry out
        with pytest.raises(RemoteError):
            await ctx.request("shop", Quote(item="bomb"), returns=Price)
        assert len(table) == 0
        with pytest.raises(DeadlineExceeded):
            await ctx.request("nobody", Quote(item="tea"), returns=Price, timeout=1.0)
        assert len(table) == 0  # forgotten by the requester that gave up


async def test_a_requester_in_another_process_is_answered_through_its_inbox() -> None:
    svc, _ = shop()
    shared = RecordingTransport(MemoryTransport())
    async with System(svc, transport=shared), System(transport=shared) as client:
        price = await client.context().request("shop", Quote(item="tea"), returns=Price)
    await shared.close()
    assert price == Price(item="tea", cents=300)
    replies = [m for c, m in shared.records if c == client.node.inbox]
    assert [m.type for m in replies] == [Price.type_name]


async def test_async_request_response_awaited_later() -> None:
    svc, _ = shop()
    async with TestSystem(svc) as system:
        ctx = system.context()
        first = ctx.request("shop", Quote(item="a"), returns=Price)
        second = ctx.request("shop", Quote(item="bbb"), returns=Price)
        await system.settle()  # both handled before anyone awaited
        assert len(system.messages("shop.events", Ordered)) == 2
        assert (await second).cents == 300
        assert (await first).cents == 100


async def test_requests_go_out_in_the_order_they_were_made() -> None:
    svc, _ = shop()
    async with TestSystem(svc) as system:
        ctx = system.context()
        first = ctx.request("shop", Quote(item="a"), returns=Price)
        second = ctx.request("shop", Quote(item="bb"), returns=Price)
        assert (await second).cents == 200  # awaiting the later one sends both, in order
        assert (await first).cents == 100
        sent = [m.id for m in system.messages("shop", Quote)]
    assert sent == [first.request_id, second.request_id]


async def test_one_way_send_and_command_returning_none() -> None:
    svc, notes = shop()
    async with TestSystem(svc) as system:
        ctx = system.context()
        await ctx.send("shop", Notify(text="hello"))
        assert await ctx.request("shop", Notify(text="req")) is None
        await system.settle()
    assert notes == ["hello", "req"]


async def test_publish_subscribe_each_group_gets_each_event() -> None:
    svc, _ = shop()
    got: dict[str, list[str]] = {"audit": [], "stats": []}
    listeners = []
    for name in got:
        listener = Service(name)

        @listener.subscribe("shop.events")
        async def on_ordered(event: Ordered, ctx: Context) -> None:
            got[ctx.service].append(event.item)

        listeners.append(listener)
    async with TestSystem(svc, *listeners) as system:
        for item in ("x", "y", "z"):
            await system.context().request("shop", Quote(item=item), returns=Price)
        await system.settle()
    assert got == {"audit": ["x", "y", "z"], "stats": ["x", "y", "z"]}
    assert [e.item for e in system.published(Ordered)] == ["x", "y", "z"]


async def test_remote_error_carries_type_message_and_service() -> None:
    svc, _ = shop()
    async with TestSystem(svc, raise_handler_errors=False) as system:
        with pytest.raises(RemoteError) as caught:
            await system.context().request("shop", Quote(item="bomb"), returns=Price)
    error = caught.value
    assert (error.error_type, error.error_message, error.service) == (
        "ValueError",
        "cannot price a bomb",
        "shop",
    )
    assert [f.final for f in system.failures] == [False] * 4 + [True]  # 5 attempts


async def test_handler_error_surfaces_in_the_test() -> None:
    svc, _ = shop()

    async def run() -> None:
        async with TestSystem(svc) as system:
            await system.context().send("shop", Quote(item="bomb"))
            await system.settle()

    with pytest.raises(ValueError, match="cannot price a bomb") as caught:
        await run()
    assert any("raised by handler shop.quote" in note for note in caught.value.__notes__)


class Ask(Command, frozen=True):
    hops: int


class Answer(Document, frozen=True):
    deadline: float | None


async def test_deadline_propagates_across_two_hops() -> None:
    front, middle, back = Service("front"), Service("middle"), Service("back")
    seen: dict[str, float | None] = {}

    @front.command
    async def front_ask(cmd: Ask, ctx: Context) -> Answer:
        seen["front"] = ctx.deadline
        return await ctx.request("middle", Ask(hops=2), returns=Answer, timeout=60)

    @middle.command
    async def middle_ask(cmd: Ask, ctx: Context) -> Answer:
        seen["middle"] = ctx.deadline
        return await ctx.request("back", Ask(hops=3), returns=Answer, timeout=60)

    @back.command
    async def back_ask(cmd: Ask, ctx: Context) -> Answer:
        seen["back"] = ctx.deadline
        return Answer(deadline=ctx.deadline)

    async with TestSystem(front, middle, back) as system:
        start = system.clock.time()
        answer = await system.context().request("front", Ask(hops=1), returns=Answer, timeout=5)
    # the 60 s budgets of the inner requests are capped by the caller's 5 s
    assert answer.deadline == pytest.approx(start + 5, abs=1e-3)
    assert seen["front"] == seen["middle"] == seen["back"] == answer.deadline


async def test_slow_second_hop_gives_the_caller_deadline_exceeded() -> None:
    front, back = Service("front"), Service("back")
    handled: list[int] = []

    @front.command
    async def front_ask(cmd: Ask, ctx: Context) -> Answer:
        return await ctx.request("back", Ask(hops=2), returns=Answer)

    @back.command
    async def back_ask(cmd: Ask, ctx: Context) -> Answer:
        await ctx.sleep(10)
        handled.append(cmd.hops)
        return Answer(deadline=None)

    async with TestSystem(front, back, raise_handler_errors=False) as system:
        with pytest.raises(DeadlineExceeded):
            await system.context().request("front", Ask(hops=1), returns=Answer, timeout=2)
        await system.settle()
        assert system.clock.time() < 1_700_000_000.0 + 3  # virtual time, nothing waited 10 s
    assert handled == []  # the slow hop was cut off at the deadline, not finished late


async def test_message_past_its_deadline_is_not_handled_and_requester_told() -> None:
    calls: list[str] = []
    slow = Service("slow", concurrency=1)

    @slow.command
    async def work(cmd: Quote, ctx: Context) -> Price:
        calls.append(cmd.item)
        await ctx.sleep(5)
        return Price(item=cmd.item, cents=1)

    async with TestSystem(slow) as system:
        ctx = system.context()
        first = ctx.request("slow", Quote(item="first"), returns=Price, timeout=60)
        late = ctx.request("slow", Quote(item="late"), returns=Price, timeout=1)
        with pytest.raises(DeadlineExceeded, match=r"no reply from 'slow' .* within its 1 s"):
            await late  # queued behind 'first'; it expires before a worker is free
        assert (await first).item == "first"
        await system.settle()
        stats = system.system.stats()["slow:slow/slow"]
    assert calls == ["first"]
    assert stats.expired == 1


async def test_expired_message_gets_a_deadline_failure_reply() -> None:
    """A request that arrives late (e.g. clock skew) is answered, not handled."""
    svc, _ = shop()
    async with TestSystem(svc) as system:
        node = system.system.node
        past = system.clock.time() - 1
        late = node.envelope(Quote(item="x"), source="skewed", deadline=past, replyto="probe")
        await system.transport.publish("shop", late)
        await system.settle()
        [reply] = system.messages("probe")
        failure = node.decode(reply)
    assert reply.causationid == late.id
    assert isinstance(failure, Failure)
    assert failure.error_type == "DeadlineExceeded"
    assert "after its deadline" in failure.message
    assert system.messages("shop.events") == []  # the handler never ran


class Offer(Document, frozen=True):
    courier: str
    cents: int


class AskOffer(Command, frozen=True):
    order: str


def couriers(delays: dict[str, float]) -> list[Service]:
    services = []
    for name in delays:
        svc = Service(name)

        @svc.subscribe("offers")
        async def offer(ask: AskOffer, ctx: Context) -> Offer:
            await ctx.sleep(delays[ctx.service])
            return Offer(courier=ctx.service, cents=int(delays[ctx.service] * 100))

        services.append(svc)
    return services


async def test_scatter_gather_returns_what_arrived_by_the_deadline() -> None:
    fleet = couriers({"fast": 0.1, "medium": 0.5, "slow": 9.0})
    async with TestSystem(*fleet) as system:
        offers = await system.context().gather(
            "offers", AskOffer(order="o1"), returns=Offer, timeout=1
        )
        await system.settle()
    assert sorted(o.courier for o in offers) == ["fast", "medium"]


async def test_scatter_gather_stops_at_count() -> None:
    fleet = couriers({"a": 0.1, "b": 0.2, "c": 0.3})
    async with TestSystem(*fleet) as system:
        start = system.clock.time()
        offers = await system.context().gather(
            "offers", AskOffer(order="o1"), returns=Offer, timeout=10, count=2
        )
        took = system.clock.time() - start
        await system.settle()
    assert [o.courier for o in offers] == ["a", "b"]
    assert took == pytest.approx(0.2, abs=0.01)


async def test_scatter_gather_with_no_responder_returns_empty() -> None:
    async with TestSystem() as system:
        offers = await system.context().gather(
            "nobody", AskOffer(order="x"), returns=Offer, timeout=1
        )
    assert offers == []


async def test_retry_then_success_uses_backoff_in_virtual_time() -> None:
    svc = Service("flaky", retry=RetryPolicy(max_attempts=4, initial_backoff=1.0, jitter=0.0))
    attempts: list[float] = []

    @svc.command
    async def flaky(cmd: Quote, ctx: Context) -> Price:
        attempts.append(ctx.now)
        if len(attempts) < 3:
            raise ConnectionError("backend down")
        return Price(item=cmd.item, cents=1)

    async with TestSystem(svc) as system:
        price = await system.context().request("flaky", Quote(item="x"), returns=Price)
    assert price.cents == 1
    gaps = [round(b - a, 3) for a, b in itertools.pairwise(attempts)]
    assert gaps == [1.0, 2.0]  # exponential backoff, no real sleeping


async def test_non_retryable_error_is_dead_lettered_at_once() -> None:
    policy = RetryPolicy(retry_on=lambda exc: not isinstance(exc, KeyError))
    svc = Service("strict", retry=policy)

    @svc.command
    async def strict(cmd: Quote) -> None:
        raise KeyError(cmd.item)

    async with TestSystem(svc, raise_handler_errors=False) as system:
        await system.context().send("strict", Quote(item="nope"))
        await system.settle()
    assert len(system.failures) == 1
    [dead] = system.dead_letters("strict")
    assert dead.headers["seawall-dlq-attempt"] == "1"
    assert dead.headers["seawall-dlq-reason"] == "handler-error"


async def test_a_handlers_own_timeout_error_is_retried_not_taken_for_the_deadline() -> None:
    svc = Service("timing", retry=RetryPolicy(max_attempts=3, initial_backoff=0.1, jitter=0.0))
    calls: list[int] = []

    @svc.command
    async def timing(cmd: Quote) -> Price:
        calls.append(1)
        if len(calls) < 3:
            raise TimeoutError("the backend did not answer in 1 s")
        return Price(item=cmd.item, cents=7)

    async with TestSystem(svc) as system:
        price = await system.context().request("timing", Quote(item="x"), returns=Price, timeout=60)
    assert (price.cents, len(calls)) == (7, 3)
    assert system.system.stats()["timing:timing/timing"].expired == 0


async def test_a_failed_request_downstream_is_not_retried_again_upstream() -> None:
    front = Service("front", retry=RetryPolicy(max_attempts=5, initial_backoff=0.1))
    back = Service("back", retry=RetryPolicy(max_attempts=3, initial_backoff=0.1))
    runs = {"front": 0, "back": 0}

    @front.command
    async def front_quote(cmd: Quote, ctx: Context) -> Price:
        runs["front"] += 1
        return await ctx.request("back", cmd, returns=Price)

    @back.command
    async def back_quote(cmd: Quote) -> Price:
        runs["back"] += 1
        raise ValueError("out of stock")

    async with TestSystem(front, back, raise_handler_errors=False) as system:
        with pytest.raises(RemoteError, match="RemoteError"):
            await system.context().request("front", Quote(item="x"), returns=Price)
        await system.settle()
    assert runs == {"front": 1, "back": 3}  # not 5 x 3
    assert len(system.dead_letters("back")) == 1
    assert len(system.dead_letters("front")) == 1


async def test_a_bad_body_after_good_ones_of_its_type_is_still_a_decode_error() -> None:
    # The dispatcher caches each type's decoder after the first message of it;
    # a later body that does not decode must still be dead-lettered with the full error.
    svc, notes = shop()
    async with TestSystem(svc, raise_handler_errors=False) as system:
        ctx = system.context()
        await ctx.send("shop", Notify(text="first"))
        await system.settle()
        bad = system.system.node.envelope(Notify(text="x"), source="test")
        await system.transport.publish("shop", msgspec.structs.replace(bad, data=b'{"text": 1}'))
        await ctx.send("shop", Notify(text="second"))
        await system.settle()
    assert notes == ["first", "second"]
    [dead] = system.dead_letters("shop")
    assert dead.id == bad.id
    assert dead.headers["seawall-dlq-reason"] == "decode-error"
    assert "Expected `str`, got `int`" in dead.headers["seawall-dlq-error"]
    assert bad.id in dead.headers["seawall-dlq-error"]


class _JumpingClock(VirtualClock):
    """A virtual clock that moves ``jump`` seconds right after the dispatcher reads it
    to check a message's deadline (standing in for a slow moment on a loaded machine)."""

    def __init__(self) -> None:
        super().__init__()
        self.jump = 0.0

    def time(self) -> float:
        now = super().time()
        if self.jump and sys._getframe(1).f_code.co_name == "_work":
            self.advance(self.jump)
        return now


async def test_deadline_passing_just_before_the_handler_starts_leaves_no_coroutine() -> None:
    """The handler call is made only once its deadline timer is armed: no coroutine is
    created and dropped (which Python reports as 'never awaited') when the deadline
    passes between the dispatcher's first look and the call."""
    calls: list[str] = []
    svc = Service("edge")

    @svc.command
    async def work(cmd: Quote) -> Price:
        calls.append(cmd.item)
        return Price(item=cmd.item, cents=1)

    clock = _JumpingClock()
    async with TestSystem(svc, clock=clock) as system:
        node = system.system.node
        message = node.envelope(
            Quote(item="x"), source="t", deadline=clock.time() + 0.5, replyto="probe"
        )
        clock.jump = 1.0  # the check sees t, the deadline timer t+1
        await system.transport.publish("edge", message)
        for _ in range(100):
            if system.messages("probe"):
                break
            await asyncio.sleep(0)
        clock.jump = 0.0
        await system.settle()
        gc.collect()  # a dropped handler coroutine would warn here (an error under pytest)
        stats = system.system.stats()["edge:edge/edge"]
    assert calls == []
    assert stats.expired == 1


class _StalledLink:
    """The memory transport, except that publishes to ``stalled`` never complete (a broker
    link that is down and does not come back) and those to ``slow`` channels take their
    time: fault injection around the reference transport, no mock."""

    def __init__(self, inner: MemoryTransport, slow: dict[str, float] | None = None) -> None:
        self.inner = inner
        self.slow = slow or {}
        self.capabilities = inner.capabilities
        self.declare = inner.declare
        self.subscribe = inner.subscribe
        self.close = inner.close

    async def publish(self, channel: str, message: Any, **options: Any) -> None:
        if channel == "stalled":
            await asyncio.Event().wait()
        await asyncio.sleep(self.slow.get(channel, 0))
        await self.inner.publish(channel, message, **options)


async def test_a_request_whose_send_never_completes_ends_at_its_deadline() -> None:
    svc, _ = shop()
    link = _StalledLink(MemoryTransport())
    async with System(svc, transport=link) as system:  # type: ignore[arg-type]
        ctx = system.context()
        with pytest.raises(DeadlineExceeded, match=r"could not send .* to 'stalled'"):
            await asyncio.wait_for(ctx.request("stalled", Quote(item="x"), timeout=0.2), 5)
        # requests made after it are not stuck behind it
        price = await asyncio.wait_for(
            ctx.request("shop", Quote(item="ab"), returns=Price, timeout=2), 5
        )
    assert price.cents == 200


async def test_a_request_past_its_deadline_ends_in_deadline_exceeded_not_cancellation() -> None:
    """Another request made between a request's deadline and the firing of its timer (a
    busy loop) must not turn the first one's DeadlineExceeded into a cancelled handler."""
    clock = VirtualClock()

    async def wait(reply: Any) -> Any:
        return await reply

    async with System(transport=MemoryTransport(clock=clock), clock=clock) as system:
        ctx = system.context()
        first = asyncio.create_task(wait(ctx.request("nobody", Quote(item="x"), timeout=1)))
        for _ in range(20):
            await asyncio.sleep(0)  # sent; waiting for a reply that never comes
        clock._now += 2  # the deadline passes, its timer not fired yet
        ctx.request("nobody", Quote(item="y"), timeout=5)
        for _ in range(20):
            await asyncio.sleep(0)
        clock.advance(0)  # now the first request's timer fires
        with pytest.raises(DeadlineExceeded, match="no reply from 'nobody'"):
            await first


async def test_a_handler_leaking_cancelled_error_fails_without_stopping_its_worker() -> None:
    """A CancelledError that is not a cancellation of the worker (the handler awaited a
    future someone else cancelled) is a handler failure: retried, then dead-lettered, and
    the worker goes on with the next message."""
    svc = Service("leaky", concurrency=1, retry=RetryPolicy(max_attempts=2, initial_backoff=0.01))

    @svc.command
    async def work(cmd: Quote) -> Price:
        if cmd.item == "leak":
            gone: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            gone.cancel()
            await gone
        return Price(item=cmd.item, cents=1)

    async with TestSystem(svc, raise_handler_errors=False) as system:
        ctx = system.context()
        with pytest.raises(RemoteError, match="raised CancelledError without being cancelled"):
            await ctx.request("leaky", Quote(item="leak"), returns=Price, timeout=5)
        after = await ctx.request("leaky", Quote(item="next"), returns=Price, timeout=5)
        await system.settle()
        stats = system.system.stats()["leaky:leaky/leaky"]
    assert after.item == "next"  # the only worker is still there
    assert stats.failed == 2
    assert stats.dead_lettered == 1


async def test_a_request_giving_up_mid_send_does_not_cancel_another_requests_send() -> None:
    """Sends go out in order, so a request may be publishing an earlier request's message
    when its own deadline passes; that earlier request must still get its reply."""
    svc, _ = shop()
    link = _StalledLink(MemoryTransport(), slow={"shop": 0.3})
    async with System(svc, transport=link) as system:  # type: ignore[arg-type]
        ctx = system.context()
        earlier = ctx.request("shop", Quote(item="abc"), returns=Price, timeout=5)
        with pytest.raises(DeadlineExceeded):
            # publishes 'earlier' first (0.3 s), and its own deadline passes meanwhile
            await asyncio.wait_for(ctx.request("stalled", Quote(item="x"), timeout=0.1), 5)
        price = await asyncio.wait_for(earlier, 5)
    assert price.cents == 300
