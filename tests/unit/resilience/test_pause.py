"""Pause instead of burn: a consumer that declared a dependency holds its messages while
the dependency's breaker is open, spends no attempts and dead-letters nothing, and
resumes by itself once the dependency recovers (on the virtual clock)."""

from __future__ import annotations

from seawall import Command, Context, Document, RetryPolicy, Service
from seawall.resilience import BreakerPolicy, CallPolicy, Policies
from seawall.testing import TestSystem


class PlaceOrder(Command, frozen=True):
    n: int


class Charge(Command, frozen=True):
    n: int


class Charged(Document, frozen=True):
    n: int


def shop(depends: bool) -> tuple[Service, Service, dict[str, object]]:
    state: dict[str, object] = {"down": True, "charged": [], "attempts": 0}
    payments = Service("payments", retry=RetryPolicy(max_attempts=1))
    orders = Service(
        "orders",
        depends_on=["payments"] if depends else [],
        retry=RetryPolicy(max_attempts=3, initial_backoff=0.1, jitter=0.0),
    )

    @payments.command
    async def charge(cmd: Charge) -> Charged:
        if state["down"]:
            raise ConnectionError("the card processor is down")
        return Charged(n=cmd.n)

    @orders.command
    async def place(cmd: PlaceOrder, ctx: Context) -> None:
        state["attempts"] = int(state["attempts"]) + 1  # type: ignore[call-overload]
        reply = await ctx.request("payments", Charge(n=cmd.n), returns=Charged)
        state["charged"].append(reply.n)  # type: ignore[attr-defined]

    return orders, payments, state


POLICIES = Policies(
    targets={
        "payments": CallPolicy(
            breaker=BreakerPolicy(window=5, minimum_calls=5, open_for=30.0, trials=1)
        )
    }
)


async def test_with_the_downstream_failing_nothing_is_dead_lettered_and_it_resumes() -> None:
    orders, payments, state = shop(depends=True)
    system = TestSystem(orders, payments, policies=POLICIES, raise_handler_errors=False)
    async with system:
        ctx = system.context()
        for n in range(20):
            await ctx.send("orders", PlaceOrder(n=n))
        await ctx.sleep(100.0)  # the downstream stays down for a while
        assert system.dead_letters("orders") == []
        held = system.system.stats()["orders:orders/orders"].held
        assert held > 0
        [breaker] = system.system.breakers()
        assert breaker.state == "open"
        # while open, orders takes nothing: few attempts in 100 s (trials only, not a storm)
        attempts_while_down = int(state["attempts"])  # type: ignore[call-overload]
        assert attempts_while_down < 20

        state["down"] = False  # the downstream recovers; nobody touches the consumer
        await system.settle()
        stats = system.system.stats()["orders:orders/orders"]
        [breaker] = system.system.breakers()
    assert breaker.state == "closed"
    assert sorted(state["charged"]) == list(range(20))  # type: ignore[call-overload]
    assert stats.dead_lettered == 0
    assert stats.handled == 20


async def test_without_the_declared_dependency_the_same_failures_are_dead_lettered() -> None:
    orders, payments, _ = shop(depends=False)
    system = TestSystem(orders, payments, policies=POLICIES, raise_handler_errors=False)
    async with system:
        ctx = system.context()
        for n in range(20):
            await ctx.send("orders", PlaceOrder(n=n))
        await system.settle()
        burnt = system.dead_letters("orders")
    assert len(burnt) == 20  # the comparison: each spent its attempts (or was refused)
