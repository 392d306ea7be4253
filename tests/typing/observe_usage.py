"""Checked by ``mypy --strict`` (not run by pytest): middleware, lifespans and observability.

Decorators keep the decorated function's own type; ``ctx.resource(fn)`` is
typed by what ``fn`` yields; a layer of the wrong shape is refused.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from typing import assert_type

from seawall import (
    Command,
    Context,
    Handling,
    Health,
    Middleware,
    NextHandle,
    NextSend,
    Outcome,
    Outgoing,
    Service,
    System,
)
from seawall.observability import Tracing
from seawall.observability.logs import LogContext
from seawall.observability.metrics import Metrics


class Pool:
    async def fetch(self, query: str) -> list[str]:
        return [query]


class Lookup(Command, frozen=True):
    query: str


shop = Service("shop")


@shop.lifespan
async def pool() -> AsyncIterator[Pool]:
    yield Pool()


@shop.lifespan
@contextlib.asynccontextmanager
async def settings(ctx: Context) -> AsyncIterator[dict[str, str]]:
    yield {"service": ctx.service}


@shop.around_handle
async def timing(call: Handling, call_next: NextHandle) -> object:
    try:
        return await call_next(call)
    except Exception as exc:
        assert_type(call.outcome(exc), Outcome | None)
        raise


@shop.around_send
async def stamp(out: Outgoing, call_next: NextSend) -> None:
    await call_next(out.with_message(out.message))


@shop.command
async def lookup(cmd: Lookup, ctx: Context) -> None:
    assert_type(ctx.resource(pool), Pool)
    assert_type(ctx.resource(settings), dict[str, str])
    await ctx.resource(pool).fetch(cmd.query)


assert_type(pool, Callable[[], AsyncIterator[Pool]])


class Audit(Middleware):
    async def handle(self, call: Handling, call_next: NextHandle) -> object:
        return await call_next(call)


async def wrong_shape(call: Handling) -> object:
    return call


shop.around_handle(wrong_shape)  # type: ignore[type-var]

system = System(shop, middleware=[Audit(), Tracing(), Metrics(), LogContext()])
assert_type(system.health(), Health)
