"""The polling publisher: a relay that reads the outbox table and publishes what it finds.

Each step claims a bounded batch of committed rows (:meth:`Outbox.claim`:
commit order per aggregate; on PostgreSQL only the buckets no other relay
holds), publishes them (:func:`~seawall.outbox._relay.publish_in_order`),
and deletes or marks them when every publish returned. Between steps it
waits for a commit in this process (the outbox's wake-up) or ``poll``
seconds, whichever comes first; while batches come back full it does not
wait at all. Back-pressure comes for free: a step publishes at most ``batch``
rows, at most ``window`` at once, and a transport that makes publishers wait
makes the relay wait.
"""

from __future__ import annotations

from typing import Any

from .._clock import Clock
from .._exceptions import ConfigurationError
from .._transport import Transport
from ._outbox import Outbox
from ._relay import RelayStats, publish_in_order, relay_forever

__all__ = ["PollingRelay"]


class PollingRelay:
    """Publishes an outbox's committed rows, at-least-once, in commit order per aggregate.

    ``batch`` rows per step at most, ``window`` aggregates published at once; with several
    relays on one PostgreSQL outbox, ``buckets`` (partitions per claim) lets them share.
    """

    def __init__(
        self,
        outbox: Outbox[Any],
        transport: Transport,
        *,
        batch: int = 500,
        window: int = 64,
        poll: float = 0.5,
        buckets: int | None = None,
        clock: Clock | None = None,
    ) -> None:
        if batch < 1 or window < 1 or poll <= 0:
            raise ConfigurationError(
                f"PollingRelay needs batch >= 1, window >= 1 and poll > 0; got batch={batch}, "
                f"window={window}, poll={poll}"
            )
        self.outbox = outbox
        self.transport = transport
        self._batch = batch
        self._window = window
        self._poll = poll
        self._buckets = buckets
        self._clock = clock or outbox.clock
        self._stats = RelayStats()

    def statistics(self) -> RelayStats:
        """The relay's counters (one live object)."""
        return self._stats

    async def step(self) -> int:
        """Publish one batch of committed rows and settle it; how many rows it held."""
        async with self.outbox.claim(self._batch, buckets=self._buckets) as rows:
            await publish_in_order(self.transport, rows, window=self._window, stats=self._stats)
        if rows:
            self._stats.batches += 1
            self._stats.position = str(rows[-1].position)
        return len(rows)

    async def drain(self) -> int:
        """Publish until the outbox is empty; how many rows were published."""
        total = 0
        while (done := await self.step()) > 0:
            total += done
        return total

    async def run(self) -> None:
        """Publish as rows are committed, until cancelled; outbox and transport failures
        are retried with backoff (see :attr:`RelayStats.failures`)."""
        await relay_forever(
            "outbox relay",
            self.step,
            batch=self._batch,
            clock=self._clock,
            poll=self._poll,
            stats=self._stats,
            wakeup=self.outbox.wakeup,
        )
