"""A service's tables with a transactional outbox and an idempotent inbox.

Order, Kitchen and Accounting keep their state in their own SQLite file
(:mod:`examples.ftgo.store`) and change it only in outbox transactions
(:mod:`seawall.outbox`): the rows they write, the events they publish and the
inbox entry of the message being handled commit together. A handler marked
``@tables.idempotent`` runs once per message id, however often the message
comes; a repeat gets the reply the first run gave. The file is opened as an
outbox by the service's lifespan, which also runs the relay that publishes
the committed events (one relay per SQLite file: with several instances of a
service, the first instance relays).
"""

from __future__ import annotations

import asyncio
import functools
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

from seawall import Context, Payload
from seawall.outbox import Inbox, PollingRelay, SQLiteOutbox, SQLiteTransaction

from .store import Store, state_dir

__all__ = ["Tables"]

P = TypeVar("P", bound=Payload)
R = TypeVar("R")


class Tables:
    """The service's file (``schema`` created on first use) as an outbox with an inbox."""

    def __init__(self, service: str, schema: str) -> None:
        self.store = Store(service, schema)  # creates the tables; reads go through it too
        self.path = state_dir() / f"{service}.db"
        self._outbox: SQLiteOutbox | None = None
        self._inbox: Inbox[SQLiteTransaction] | None = None
        self._handlers: dict[Any, Callable[[Any, Context], Awaitable[Any]]] = {}

    @property
    def outbox(self) -> SQLiteOutbox:
        if self._outbox is None:
            raise RuntimeError(f"the outbox of {self.path} is not open: register Tables.lifespan")
        return self._outbox

    async def lifespan(self, ctx: Context) -> AsyncIterator[SQLiteOutbox]:
        """Open the outbox, relay it while the service runs (first instance only), close it."""
        # A killed process loses nothing on the OS side, so the demo skips the fsync per
        # commit; a power loss could lose the last commits (and their messages) together.
        outbox = await SQLiteOutbox.open(self.path, sync="none", clock=ctx.clock)
        self._outbox, self._inbox = outbox, Inbox(outbox)
        relays = os.environ.get("SEAWALL_UP_INSTANCE", "x-1").rsplit("-", 1)[-1] == "1"
        try:
            async with asyncio.TaskGroup() as tasks:
                if relays:
                    relay = PollingRelay(outbox, ctx.transport, poll=0.2, clock=ctx.clock)
                    task = tasks.create_task(relay.run())
                yield outbox
                if relays:
                    await relay.drain()  # what the last handlers committed goes out now
                    task.cancel()
        finally:
            self._outbox = self._inbox = None
            await outbox.close()

    def transaction(self, ctx: Context) -> Any:
        """``async with tables.transaction(ctx) as tx:`` for a handler that is not idempotent."""
        return self.outbox.transaction(ctx)

    def idempotent(
        self, handler: Callable[[P, SQLiteTransaction], Awaitable[R]]
    ) -> Callable[[P, Context], Awaitable[R]]:
        """Run ``handler(payload, tx)`` once per message, in a transaction with its inbox entry."""

        @functools.wraps(handler)
        async def once(payload: P, ctx: Context) -> R:
            wrapped = self._handlers.get(handler)
            if wrapped is None:
                if self._inbox is None:
                    raise RuntimeError(f"{self.path} is not open: register Tables.lifespan")
                wrapped = self._handlers[handler] = self._inbox.idempotent(handler)
            result: R = await wrapped(payload, ctx)
            return result

        return once
