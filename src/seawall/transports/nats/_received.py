"""Plain subscriptions taking each message as the server sent it: subject, payload and
header block, before nats-py makes a ``Msg`` of it.

nats-py hands each message it reads to ``Client._process_msg``, which parses its
header block into a dict (``_process_headers``), builds a ``Msg`` (decoding the
subject and reply) and puts it on the subscription's queue. For the plain
messages of the request/reply path (replies on reply inboxes, direct requests)
seawall then rebuilds its :class:`~seawall._messages.envelope.Message` from that
dict, so each message was taken apart twice; with a dozen CloudEvents headers
that was the largest cost of reading one.

:func:`install` gives one client a ``_process_msg`` (an attribute of the
instance, which the parser's ``self.nc._process_msg`` finds first) that hands a
message of a subscription made by :func:`subscribe` to its taker as received,
counting it in the client's stats as nats-py does, and passes every other
message to nats-py's own method. The nats-py subscription stays registered as
any other (no callback, so no task of its own): nats-py unsubscribes it, and
subscribes it again after a reconnect, under the same id. A nats-py without those
internals gets the generic way: a callback, and the header block written back
from the dict nats-py read (:func:`subscribe` tells the taker which it got).
"""

from __future__ import annotations

import logging
import types
from collections.abc import Awaitable, Callable
from typing import Any

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

__all__ = ["Take", "install", "read_headers", "subscribe", "unsubscribe"]

log = logging.getLogger("seawall.transports.nats")

Take = Callable[[str, bytes, "bytes | dict[str, str] | None"], Awaitable[None]]
"""A taker: subject, payload, and the header block as received (or, where nats-py read it
first, its dict; None without headers). Awaited in nats-py's read loop: it must not wait."""

_TAKERS = "_seawall_takers"


def install(client: Client) -> bool:
    """Have ``client`` hand the messages of :func:`subscribe`'s subscriptions over as
    received; False where this nats-py lacks what that needs (nothing is changed)."""
    target: Any = client
    if isinstance(getattr(target, _TAKERS, None), dict):
        return True
    if not (isinstance(getattr(target, "_subs", None), dict) and callable(target._process_msg)):
        return False
    takers: dict[int, Take] = {}
    process_msg = target._process_msg  # nats-py's, bound

    async def process(
        self: Any, sid: int, subject: bytes, reply: bytes, data: bytes, headers: bytes | None
    ) -> None:
        take = takers.get(sid)
        if take is None:
            await process_msg(sid, subject, reply, data, headers)
            return
        stats = self.stats
        stats["in_msgs"] += 1
        stats["in_bytes"] += len(data)
        if sid not in self._subs:  # unsubscribed meanwhile: nats-py drops it too
            del takers[sid]
            return
        try:
            await take(subject.decode(), data, headers)
        except Exception:  # never into nats-py's read loop
            log.exception("a plain NATS message on %s could not be taken", subject)

    target._process_msg = types.MethodType(process, client)
    setattr(target, _TAKERS, takers)
    return True


async def subscribe(client: Client, subject: str, take: Take, *, queue: str = "") -> Subscription:
    """A subscription whose messages go to ``take`` as received (once :func:`install`
    took), or through a callback with the headers nats-py read."""
    takers: dict[int, Take] | None = getattr(client, _TAKERS, None)
    if takers is not None:
        handle = await client.subscribe(subject, queue=queue)  # no callback: no task
        takers[handle._id] = take
        pending: Any = handle._pending_queue  # what came while subscribing, if anything
        while not pending.empty():
            msg = pending.get_nowait()
            handle._pending_size -= len(msg.data)
            await take(msg.subject, msg.data, msg.headers)
        return handle

    async def callback(msg: Msg) -> None:
        await take(msg.subject, msg.data, msg.headers)

    return await client.subscribe(subject, queue=queue, cb=callback)


async def unsubscribe(client: Client, handle: Subscription) -> None:
    """Unsubscribe ``handle`` and forget its taker."""
    takers: dict[int, Take] | None = getattr(client, _TAKERS, None)
    if takers is not None:
        takers.pop(handle._id, None)
    await handle.unsubscribe()


async def read_headers(client: Client, block: bytes) -> dict[str, str] | None:
    """The headers nats-py reads from a header block as received (status line included)."""
    target: Any = client
    headers: dict[str, str] | None = await target._process_headers(block)
    return headers
