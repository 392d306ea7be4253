"""Checked by ``mypy --strict`` (not run by pytest): call policies keep their types."""

from __future__ import annotations

from typing import assert_type

from seawall import Command, Context, Document, Reply, Service, System
from seawall.discovery import BreakerState, Route
from seawall.resilience import (
    BreakerPolicy,
    CallPolicy,
    CircuitBreaker,
    Policies,
    ReplyStore,
    RequestRetry,
)
from seawall.resilience.breaker import State
from seawall.transports import SqliteReplyStore


class Charge(Command, frozen=True):
    type_name = "pay.Charge"
    cents: int


class Charged(Document, frozen=True):
    type_name = "pay.Charged"
    cents: int


store: ReplyStore = SqliteReplyStore("replies.db")
payments = Service("payments", reply_store=store, reply_cache=256)
orders = Service("orders", depends_on=["payments"])
policies = Policies(
    default=CallPolicy(timeout=5.0),
    targets={"payments": CallPolicy(breaker=BreakerPolicy(), max_outstanding=8, overflow="shed")},
)
system = System(payments, orders, policies=policies)
assert_type(system.breakers(), tuple[BreakerState, ...])


async def call(ctx: Context) -> None:
    retry = CallPolicy(retry=RequestRetry(attempts=3, attempt_timeout=0.5))
    reply = ctx.request("payments", Charge(cents=1), returns=Charged, policy=retry)
    assert_type(reply, Reply[Charged])
    assert_type(await reply, Charged)
    await ctx.send("payments", Charge(cents=2), policy=CallPolicy(max_outstanding=4))
    CallPolicy(overflow="drop")  # type: ignore[arg-type]
    routed = Policies(default=CallPolicy(route="least-outstanding"))
    assert_type(routed.route_for("payments"), Route | None)
    CallPolicy(route="fastest")  # type: ignore[arg-type]


breaker = CircuitBreaker("payments", BreakerPolicy(failure_rate=0.25))
assert_type(breaker.admit(0.0), bool)
assert_type(breaker.state, State)
