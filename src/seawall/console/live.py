"""What the console page shows, kept live: the topology and the dead letters, and the
two things an operator may do to them.

:class:`Console` reads the registry (:class:`~.topology.RegistryWatch`) and
holds a :class:`~.deadletters.DeadLetterView` open on the dead-letter channel
of every group the registry announces (and of those named up front), so a new
dead letter shows as soon as it is published. :meth:`Console.state` is the
whole page as plain data; :meth:`Console.act` redrives or purges, only with
the operator token, and logs every attempt, granted or refused.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from types import TracebackType
from typing import Any, Literal, Self

from .._messages.payload import TypeRegistry
from .._transport import Transport
from .deadletters import DeadLetterView, Filter, dead_letter_channels, dlq_name
from .describe import describe
from .topology import RegistryWatch

__all__ = ["Console", "Refused"]

log = logging.getLogger("seawall.console")

SHOWN = 200
"""Most dead letters the page shows at once (``seawall dlq show`` shows them all)."""
WATCH_EVERY = 1.0
"""Seconds between two looks for new groups whose dead letters to watch."""

Action = Literal["redrive", "purge"]


class Refused(Exception):
    """A mutating action without the operator token; ``status`` is the HTTP status to answer."""

    def __init__(self, status: int, text: str) -> None:
        super().__init__(text)
        self.status = status


class Console:
    """The live state of one system, seen through its transport."""

    def __init__(
        self,
        transport: Transport,
        *,
        token: str | None = None,
        registry: TypeRegistry | None = None,
        dlqs: Iterable[str] = (),
        where: str = "",
        restarts: Callable[[], Mapping[int, int]] | None = None,
    ) -> None:
        """``restarts``: by pid, the restarts of the processes a supervisor runs."""
        self.transport = transport
        self.restarts = restarts
        self.token = token
        self.registry = registry
        self.where = where
        self.reader = RegistryWatch(transport)
        self.views: dict[str, DeadLetterView] = {}
        self._wanted = {dlq_name(n) for n in dlqs}
        self._stack = contextlib.AsyncExitStack()
        self._lock = asyncio.Lock()
        self._described: dict[str, dict[str, Any]] = {}

    async def __aenter__(self) -> Self:
        async with contextlib.AsyncExitStack() as stack:
            await stack.enter_async_context(self.reader)
            self._views = await stack.enter_async_context(contextlib.AsyncExitStack())
            tasks = await stack.enter_async_context(asyncio.TaskGroup())
            watcher = tasks.create_task(self._watch())
            stack.callback(watcher.cancel)
            await self._open_views()
            self._stack = stack.pop_all()
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self._stack.aclose()

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(WATCH_EVERY)
            await self._open_views()

    async def _open_views(self) -> None:
        topology = self.reader.snapshot()
        wanted = self._wanted | set(dead_letter_channels(topology["groups"]))
        for dlq in sorted(wanted - set(self.views)):
            try:
                view = await self._views.enter_async_context(DeadLetterView(self.transport, dlq))
            except Exception as exc:  # a broker hiccup: try again on the next look
                log.warning("console: cannot watch dead letters of %s yet: %s", dlq, exc)
                continue
            self.views[dlq] = view

    def state(self) -> dict[str, Any]:
        """The whole page as plain data (the first :data:`SHOWN` dead letters of them all)."""
        letters = [letter for _, view in sorted(self.views.items()) for letter in view.letters]
        described = {
            k: self._described[k] for k in (x.key for x in letters) if k in self._described
        }
        for letter in letters[:SHOWN]:
            if letter.key not in described:
                described[letter.key] = describe(letter, self.registry)
        self._described = described  # described once each, while held
        return {
            "time": time.time(),
            "where": self.where,
            "operator": self.token is not None,
            "topology": self.reader.snapshot(self.restarts() if self.restarts else None),
            "dead_letter_channels": sorted(self.views),
            "dead_letter_count": len(letters),
            "dead_letters": [described[x.key] for x in letters[:SHOWN]],
        }

    def check(self, action: str, given: str | None, who: str) -> None:
        """Raise :class:`Refused` unless ``given`` is the operator token; log either way."""
        if self.token is None:
            log.warning("console: %s refused for %s: the console is read-only", action, who)
            raise Refused(
                403,
                f"{action} refused: this console is read-only; start it with an operator token "
                "(--operator-token, or SEAWALL_CONSOLE_TOKEN) to redrive or purge",
            )
        if given is None or not hmac.compare_digest(given.encode(), self.token.encode()):
            log.warning("console: %s refused for %s: wrong or missing operator token", action, who)
            raise Refused(401, f"{action} refused: it needs the operator token")

    async def act(
        self, action: Action, dlq: str, keys: Iterable[str], *, token: str | None, who: str
    ) -> list[str]:
        """Redrive or purge the dead letters ``keys`` of ``dlq``; the keys acted on."""
        self.check(action, token, who)
        view = self.views.get(dlq)
        if view is None:
            raise Refused(404, f"{action}: no dead-letter channel {dlq!r} is watched here")
        which = Filter(ids=frozenset(keys))
        if not which.ids:
            raise Refused(400, f"{action}: name the dead letters (their keys)")
        async with self._lock:
            if action == "redrive":
                done = await view.redrive(which, by=f"console {who}")
            else:
                done = await view.purge(which, by=f"console {who}")
        log.warning("console: %s of %d dead letter(s) of %s by %s", action, len(done), dlq, who)
        return [letter.key for letter in done]
