"""The HTTP API gateway: the way into a seawall system from outside, on Starlette and uvicorn.

Part of the edges layer (``seawall[gateway]``); the runtime never imports it.
Routes are declared in Python on a :class:`Gateway` (commands answered 202
with a ``Location``, requests and queries answered with the reply, server-sent
event streams, CloudEvents intake); around them the edge functions:
authentication (:class:`ApiKeys`, :class:`JWTAuth`, or any hook), scopes, a
per-key :class:`RateLimit`, CORS, a response cache for queries, deadlines,
the error table (504, 502, 503 with ``Retry-After``, 403, 422 naming the field),
``?expand=`` sub-requests made concurrently, OpenAPI 3.1 at ``/openapi.json``
and ``/docs``, and a server span that the services' traces continue.
"""

from __future__ import annotations

from ._auth import ApiKeys, Authenticate, JWTAuth, Principal, Unauthorized
from ._errors import HTTPError
from ._gateway import Gateway
from ._limits import RateLimit, ResponseCache, TokenBuckets
from ._routes import CloudEventsRoute, EventStream, Expand, Route
from ._serve import serve, serving

__all__ = [
    "ApiKeys",
    "Authenticate",
    "CloudEventsRoute",
    "EventStream",
    "Expand",
    "Gateway",
    "HTTPError",
    "JWTAuth",
    "Principal",
    "RateLimit",
    "ResponseCache",
    "Route",
    "TokenBuckets",
    "Unauthorized",
    "serve",
    "serving",
]
