"""Lifespans: what a system or a service opens before handling starts and closes after draining.

Part of the runtime layer. A lifespan is an async generator function (or one
returning an async context manager) taking no argument or the system's
:class:`~seawall.Context`; what it yields is a *resource* that every handler of
the process reaches with ``ctx.resource(fn)``, keyed by the function itself,
so the type checker knows what comes back::

    @orders.lifespan
    async def pool() -> AsyncIterator[Pool]:
        pool = await open_pool()
        try:
            yield pool
        finally:
            await pool.close()

    @orders.command
    async def place(cmd: PlaceOrder, ctx: Context) -> None:
        await ctx.resource(pool).execute(...)

A :class:`~seawall.System` opens its own lifespans first, then each service's,
in the order they were registered, once per process, after its transport is
ready and before any consumer starts; it closes them in reverse order after
every consumer has drained. A lifespan that raises on the way in stops the
system from starting (those already open are closed).
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

from .._exceptions import ConfigurationError, ServiceError

__all__ = ["LifespanFunction", "Resources", "check_lifespan"]

LifespanFunction = Callable[..., AsyncIterator[Any] | AbstractAsyncContextManager[Any]]
"""An async generator function, or a function returning an async context manager."""


def check_lifespan(fn: LifespanFunction, owner: str) -> None:
    """Refuse at registration what cannot be a lifespan, naming it and its owner."""
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError) as exc:
        raise ConfigurationError(f"lifespan {fn!r} of {owner}: {exc}") from exc
    if len(params) > 1 or inspect.iscoroutinefunction(fn):
        raise ConfigurationError(
            f"lifespan {getattr(fn, '__qualname__', fn)} of {owner} must be an async generator "
            "function (with one 'yield') taking no argument or a Context, or a function "
            "returning an async context manager"
        )


class Resources:
    """The resources one process's lifespans yielded, by lifespan function."""

    def __init__(self) -> None:
        self._values: dict[object, object] = {}

    async def open(self, stack: contextlib.AsyncExitStack, fn: LifespanFunction, ctx: Any) -> None:
        """Enter ``fn``'s lifespan on ``stack`` (which closes it) and keep what it yields."""
        if fn in self._values:
            return  # shared by two services of the system: opened once
        args = (ctx,) if inspect.signature(fn).parameters else ()
        manager: object
        if inspect.isasyncgenfunction(fn):
            manager = contextlib.asynccontextmanager(fn)(*args)
        else:
            manager = fn(*args)
            if not isinstance(manager, AbstractAsyncContextManager):
                raise ConfigurationError(
                    f"lifespan {getattr(fn, '__qualname__', fn)} returned a "
                    f"{type(manager).__name__}, not an async context manager"
                )
        self._values[fn] = await stack.enter_async_context(manager)
        stack.callback(self._values.pop, fn, None)

    def get(self, fn: Callable[..., Any]) -> Any:
        """What ``fn`` yielded; a clear error when it is no lifespan of this system."""
        try:
            return self._values[fn]
        except KeyError:
            name = getattr(fn, "__qualname__", repr(fn))
            raise ServiceError(
                f"{name} is not an open lifespan of this system: register it with "
                "@service.lifespan or System(lifespan=[...]); resources exist only while the "
                "system runs"
            ) from None
