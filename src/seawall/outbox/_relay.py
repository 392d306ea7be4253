"""What both relays share: publishing a batch in order, statistics, the retrying loop.

A batch is published per aggregate: one aggregate's rows one after the
other, each publish awaited (the transport has stored it) before the next,
so they arrive in commit order; up to ``window`` aggregates at once, so a
batch of many aggregates shares the broker's group commit. The relay settles
the batch (deletes rows, advances a slot) only once every publish of it
returned; a failure leaves the whole batch to be published again. That is
at-least-once: a crash between publish and settle publishes again, under the
same message ids.

The loop around a step retries the outbox's and the transport's failures
with exponential backoff on the clock (a broker restart or a database
failover is waited out, not fatal); anything else is a bug and ends it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass

from .._clock import Clock, timeout_at
from .._exceptions import OutboxError, TransportError
from .._transport import Transport
from ._rows import OutboxRow, by_aggregate, message_of

__all__ = ["RelayStats", "publish_in_order", "relay_forever"]

log = logging.getLogger("seawall.outbox")

_BACKOFF_FIRST = 0.1
_BACKOFF_MAX = 10.0


@dataclass
class RelayStats:
    """A relay's counters; tests, metrics and tools read the same object."""

    published: int = 0
    """Messages published, repeats after a crash or a failed batch included."""
    batches: int = 0
    """Batches published and settled."""
    failures: int = 0
    """Steps that failed and were tried again."""
    last_error: str | None = None
    """What the last failure said, until a step succeeds again."""
    position: str | None = None
    """How far the relay has settled: the last row position, or slot LSN."""


async def publish_in_order(
    transport: Transport, rows: Sequence[OutboxRow], *, window: int, stats: RelayStats
) -> None:
    """Publish ``rows``: per aggregate in the given order, up to ``window`` aggregates at once."""
    groups = by_aggregate(rows)
    if window <= 1 or len(groups) == 1:
        for group in groups:
            await _publish_group(transport, group, stats)
        return
    queue = iter(groups)
    try:
        async with asyncio.TaskGroup() as workers:
            for _ in range(min(window, len(groups))):
                workers.create_task(_publish_groups(transport, queue, stats))
    except BaseExceptionGroup as failed:
        raise _first(failed) from None


async def _publish_groups(
    transport: Transport, queue: Iterator[list[OutboxRow]], stats: RelayStats
) -> None:
    for group in queue:  # the workers share one iterator: each takes the next aggregate
        await _publish_group(transport, group, stats)


async def _publish_group(transport: Transport, group: list[OutboxRow], stats: RelayStats) -> None:
    for row in group:
        await transport.publish(row.channel, message_of(row))
        stats.published += 1


def _first(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The error to raise for a failed batch: the first that is not a cancellation."""
    leaves = list(_leaves(group))
    for exc in leaves:
        if not isinstance(exc, asyncio.CancelledError):
            return exc
    return leaves[0]


def _leaves(exc: BaseException) -> Iterator[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            yield from _leaves(inner)
    else:
        yield exc


async def relay_forever(
    name: str,
    step: Callable[[], Awaitable[int]],
    *,
    batch: int,
    clock: Clock,
    poll: float,
    stats: RelayStats,
    wakeup: Callable[[], asyncio.Event] | None = None,
) -> None:
    """Run ``step`` until cancelled: at once while batches come back full, else after
    ``poll`` seconds or a wake-up; failures of the outbox or transport back off and retry."""
    failed = 0
    while True:
        woken = wakeup() if wakeup is not None else asyncio.Event()
        try:
            done = await step()
        except (OutboxError, TransportError) as exc:
            failed += 1
            stats.failures += 1
            stats.last_error = str(exc)
            delay = min(_BACKOFF_MAX, _BACKOFF_FIRST * 2 ** (failed - 1))
            log.warning("%s: %s; trying again in %.1f s", name, exc, delay)
            await clock.sleep(delay)
            continue
        failed = 0
        stats.last_error = None
        if done < batch:
            # not wait_until: its timer would set the outbox's shared wake-up event, and
            # every later wait would return at once (a busy loop that starves the process)
            with contextlib.suppress(TimeoutError):
                async with timeout_at(clock, clock.time() + poll):
                    await woken.wait()
