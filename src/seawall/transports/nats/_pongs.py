"""Reading a PONG whose flush was given up on: nats-py's read loop survives it.

nats-py answers each PONG by setting the result of the oldest waiting flush
(``Client._process_pong``). A flush given up on, by its timeout or by the
cancellation of the task awaiting it (a subscription's ``drain`` or
``unsubscribe`` inside a task being stopped, say), leaves its cancelled future
in that queue; nats-py 2.16 then sets its result anyway when the PONG comes,
the ``InvalidStateError`` ends the connection's read loop, and the link reads
nothing more (no message, no publish acknowledgement, no reply) while it still
looks connected, until its pings go stale minutes later. On a loaded machine a
drain's flush is what meets it: the process then hangs in its drain until it is
killed, and what it held comes again only after AckWait.

:func:`install` gives one client a ``_process_pong`` that takes the PONG for
the oldest flush as nats-py does (one PONG per PING, in order) but sets a
result only on a flush still waiting for it; nats-py's own lookup
(``self.nc._process_pong``) finds the instance attribute first.
"""

from __future__ import annotations

import asyncio
import logging
import types
from typing import Any

__all__ = ["install", "process_pong"]

log = logging.getLogger("seawall.transports.nats")


async def process_pong(client: Any) -> None:
    """A PONG came: the oldest flush is answered, unless it was given up on."""
    pongs: list[asyncio.Future[bool]] = client._pongs
    if pongs:
        future = pongs.pop(0)
        if not future.done():
            future.set_result(True)
        else:
            log.debug("the PONG of a flush given up on came; the link reads on")
        client._pongs_received += 1
        client._pings_outstanding = 0


def install(client: Any) -> None:
    """Have ``client`` read PONGs with :func:`process_pong` (a nats-py without the
    ``_pongs`` queue and ``_process_pong`` is left as it is)."""
    if isinstance(getattr(client, "_pongs", None), list) and callable(
        getattr(client, "_process_pong", None)
    ):
        client._process_pong = types.MethodType(process_pong, client)
