"""The :class:`Gateway`: routes declared in Python, and the edge functions around them.

::

    gateway = Gateway(title="storefront", auth=ApiKeys({"k-1": "alice"}),
                      rate_limit=RateLimit(rate=50, burst=100))
    gateway.command("POST", "/orders", channel="order", payload=CreateOrder,
                    location="/orders/{order_id}")
    gateway.query("/orders/{order_id}", channel="order", payload=GetOrder,
                  returns=OrderView, expand={"consumer": Expand(...)}, cache=5.0)
    gateway.events("/orders/{order_id}/events", channel="order.events",
                   types=(OrderApproved, OrderRejected), key="order_id")

``gateway.app(system)`` is the Starlette application bound to a running
:class:`~seawall.System` (see :mod:`._app`); ``seawall gateway MODULE:ATTR
--listen HOST:PORT`` serves it with uvicorn (:mod:`._serve`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from .._exceptions import ConfigurationError
from .._messages.payload import Payload
from ._auth import Authenticate
from ._limits import RateLimit
from ._routes import CloudEventsRoute, EventStream, Expand, Route

if TYPE_CHECKING:
    from starlette.applications import Starlette

    from .._runtime.system import System

__all__ = ["Gateway"]

AnyRoute = Route | EventStream | CloudEventsRoute
R = TypeVar("R", Route, EventStream, CloudEventsRoute)


class Gateway:
    """An HTTP API in front of a seawall system: its routes and edge settings."""

    def __init__(
        self,
        *,
        title: str = "seawall gateway",
        version: str = "1.0.0",
        description: str = "",
        system: System | None = None,
        auth: Authenticate | None = None,
        rate_limit: RateLimit | None = None,
        cors_origins: Sequence[str] = (),
        timeout: float = 10.0,
        max_timeout: float = 60.0,
        timeout_header: str = "x-request-timeout",
        cache_entries: int = 1024,
        tracing: bool = True,
        tracer_provider: Any = None,
        source: str = "gateway",
    ) -> None:
        """``system``: the one ``seawall gateway`` runs (default: a client of ``--transport``).

        ``timeout`` is the routes' default, in seconds; a request may ask for its
        own in ``timeout_header`` (seconds, up to ``max_timeout``). ``source``
        names the gateway as the messages' CloudEvents ``source``.
        """
        if not 0 < timeout <= max_timeout:
            raise ConfigurationError(
                f"Gateway(timeout={timeout}, max_timeout={max_timeout}): need "
                "0 < timeout <= max_timeout"
            )
        self.title = title
        self.version = version
        self.description = description
        self.system = system
        self.auth = auth
        self.rate_limit = rate_limit
        self.cors_origins = tuple(cors_origins)
        self.timeout = timeout
        self.max_timeout = max_timeout
        self.timeout_header = timeout_header.lower()
        self.cache_entries = cache_entries
        self.tracing = tracing
        self.tracer_provider = tracer_provider
        self.source = source
        self.routes: list[AnyRoute] = []

    def add(self, route: R) -> R:
        """Add a declared route; a second one for the same method and path is refused."""
        method = route.method if isinstance(route, Route) else _method(route)
        for known in self.routes:
            other = known.method if isinstance(known, Route) else _method(known)
            if known.path == route.path and other == method:
                raise ConfigurationError(f"two routes for {method} {route.path}; keep one")
        self.routes.append(route)
        return route

    def command(
        self,
        method: str,
        path: str,
        *,
        channel: str,
        payload: type[Payload],
        location: str,
        key: str | None = None,
        scopes: Iterable[str] = (),
        summary: str = "",
    ) -> Route:
        """A one-way command: sent to ``channel``, answered ``202 Accepted`` with ``Location``."""
        return self.add(
            Route(
                method=method.upper(),
                path=path,
                kind="command",
                channel=channel,
                payload=payload,
                location=location,
                key=key,
                scopes=frozenset(scopes),
                summary=summary,
            )
        )

    def request(
        self,
        method: str,
        path: str,
        *,
        channel: str,
        payload: type[Payload],
        returns: type[Payload],
        timeout: float | None = None,
        expand: Mapping[str, Expand] | None = None,
        errors: Mapping[str, int] | None = None,
        key: str | None = None,
        scopes: Iterable[str] = (),
        summary: str = "",
    ) -> Route:
        """Request/reply: ``payload`` sent to ``channel``, the ``returns`` reply is the body."""
        return self.add(
            Route(
                method=method.upper(),
                path=path,
                kind="request",
                channel=channel,
                payload=payload,
                returns=returns,
                timeout=timeout,
                expand=dict(expand or {}),
                errors=dict(errors or {}),
                key=key,
                scopes=frozenset(scopes),
                summary=summary,
            )
        )

    def query(
        self,
        path: str,
        *,
        channel: str,
        payload: type[Payload],
        returns: type[Payload],
        timeout: float | None = None,
        expand: Mapping[str, Expand] | None = None,
        cache: float | None = None,
        errors: Mapping[str, int] | None = None,
        key: str | None = None,
        scopes: Iterable[str] = (),
        summary: str = "",
    ) -> Route:
        """An idempotent read (``GET``): cached for ``cache`` seconds, ``?expand=`` sub-requests."""
        return self.add(
            Route(
                method="GET",
                path=path,
                kind="query",
                channel=channel,
                payload=payload,
                returns=returns,
                timeout=timeout,
                expand=dict(expand or {}),
                cache=cache,
                errors=dict(errors or {}),
                key=key,
                scopes=frozenset(scopes),
                summary=summary,
            )
        )

    def events(
        self,
        path: str,
        *,
        channel: str,
        types: Sequence[type[Payload]],
        key: str | None = None,
        scopes: Iterable[str] = (),
        buffer: int = 256,
        summary: str = "",
    ) -> EventStream:
        """Server-sent events: ``channel``'s events whose ``key`` field matches the path's."""
        stream = EventStream(
            path=path,
            channel=channel,
            types=tuple(types),
            key=key,
            scopes=frozenset(scopes),
            buffer=buffer,
            summary=summary,
        )
        self.add(stream)
        return stream

    def cloudevents(
        self,
        path: str,
        *,
        channel: str,
        types: Sequence[type[Payload]],
        scopes: Iterable[str] = (),
        summary: str = "",
    ) -> CloudEventsRoute:
        """CloudEvents HTTP binding: a POSTed event, binary or structured, is published."""
        return self.add(
            CloudEventsRoute(
                path=path,
                channel=channel,
                types=tuple(types),
                scopes=frozenset(scopes),
                summary=summary,
            )
        )

    def openapi(self) -> dict[str, Any]:
        """The OpenAPI 3.1 document of the routes (what ``/openapi.json`` serves)."""
        from ._openapi import openapi

        return openapi(self)

    def app(self, system: System | None = None, *, start_system: bool = False) -> Starlette:
        """The ASGI application serving the routes through ``system`` (default: ``self.system``).

        With ``start_system`` the application's lifespan starts and drains the system;
        otherwise the caller runs it (``async with system:``) around the server.
        """
        from ._app import build

        chosen = system or self.system
        if chosen is None:
            raise ConfigurationError(
                "the gateway has no system to send through: pass one to app(system) or "
                "Gateway(system=...)"
            )
        return build(self, chosen, start_system=start_system)


def _method(route: EventStream | CloudEventsRoute) -> str:
    return "GET" if isinstance(route, EventStream) else "POST"
