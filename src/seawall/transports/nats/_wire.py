"""The NATS transport's edge with nats-py: the names it gives JetStream objects and
its error table (driver errors as seawall errors, see :mod:`seawall._transport.errors`).

Kept apart from the modules that read, publish and own partitions so that each of
them can use these without importing the others.
"""

from __future__ import annotations

import nats
import nats.errors
import nats.js.errors

from ..._transport.errors import ErrorMap, closed, lost, refused

__all__ = ["LEASE_BUCKET", "MSG_ID", "STREAM_PREFIX", "translated"]

LEASE_BUCKET = "seawall_leases"
STREAM_PREFIX = "SEAWALL_"
MSG_ID = "Nats-Msg-Id"


_UNANSWERED = (
    nats.errors.TimeoutError,
    nats.errors.NoRespondersError,
    nats.errors.OutboundBufferLimitError,
    nats.js.errors.NoStreamResponseError,
    nats.js.errors.ServiceUnavailableError,
)


translated = ErrorMap(
    "NATS",
    (nats.errors.Error,),
    [
        (nats.errors.ConnectionClosedError, closed("NATS")),
        (_UNANSWERED, lost("NATS JetStream", "it did not answer")),
        (nats.js.errors.APIError, refused("NATS JetStream")),
    ],
)
"""``with translated(what):`` raises nats-py errors met while doing ``what`` as seawall errors."""
