"""The gateway served: a Starlette application bound to one running system.

Per request: the server span (:mod:`._tracing`), authentication and scopes
(:mod:`._auth`), the per-key rate limit and the response cache
(:mod:`._limits`, on the system's clock), validation into the route's payload
(422 naming the field), the deadline (the request's timeout header or the
route's default), the send or the request through a :class:`~seawall.Context`
whose cause is the HTTP request (so every message of one request shares its
correlation id, returned as ``X-Correlation-Id``, and its trace), and the
error table of :mod:`._errors`. ``/openapi.json`` and ``/docs`` describe it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import msgspec
from starlette.applications import Starlette
from starlette.middleware import Middleware as StarletteMiddleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import BaseRoute
from starlette.routing import Route as StarletteRoute

from .._messages.envelope import Message
from .._messages.ids import uuid7
from .._messages.payload import Payload
from .._runtime.context import Context
from .._runtime.middleware import Outgoing
from .._runtime.system import System
from ._auth import Principal, Unauthorized
from ._errors import HTTPError, error_response, invalid, located
from ._events import EventHub, cloudevent_message
from ._limits import ResponseCache, TokenBuckets
from ._openapi import DOCS_HTML
from ._routes import BODY_METHODS, CloudEventsRoute, EventStream, Route, field_names, path_params
from ._tracing import ServerSpans

if TYPE_CHECKING:
    from ._gateway import Gateway

__all__ = ["build"]

_JSON = "application/json"
Endpoint = Callable[[Request], Awaitable[Response]]


class _Plan:
    """What one route reads from where, worked out once."""

    def __init__(self, route: Route) -> None:
        self.route = route
        in_path = path_params(route.path)
        self.query_fields: tuple[str, ...] = ()
        self.lists: frozenset[str] = frozenset()
        if route.method not in BODY_METHODS:
            self.query_fields = tuple(f for f in field_names(route.payload) if f not in in_path)
            props = msgspec.json.schema(route.payload).get("$defs", {})
            schema = props.get(route.payload.__name__, {}).get("properties", {})
            self.lists = frozenset(f for f, s in schema.items() if s.get("type") == "array")
        where = "query" if self.query_fields else "body"
        self.sources = dict.fromkeys(field_names(route.payload), where) | dict.fromkeys(
            in_path, "path"
        )


class _Served:
    """The gateway's state while it serves one system."""

    def __init__(self, gateway: Gateway, system: System) -> None:
        self.gateway = gateway
        self.system = system
        self.clock = system.clock
        self.buckets = None if gateway.rate_limit is None else TokenBuckets(gateway.rate_limit)
        self.cache = ResponseCache(gateway.cache_entries)
        self.spans = ServerSpans(enabled=gateway.tracing, tracer_provider=gateway.tracer_provider)
        self.hubs: dict[str, EventHub] = {}

    # -- the edge --------------------------------------------------------------------------

    async def admit(self, request: Request, scopes: frozenset[str]) -> Principal | None:
        """Authenticate, check scopes, take a rate-limit token; raise HTTPError if refused."""
        principal = None
        auth = self.gateway.auth
        if auth is not None:
            try:
                principal = await auth(request.headers)
            except Unauthorized as exc:
                challenge = {"www-authenticate": exc.challenge}
                raise HTTPError(401, "unauthorized", str(exc), challenge) from None
        if scopes and principal is None:
            raise HTTPError(401, "unauthorized", "this route needs credentials")
        if principal is not None and not scopes <= principal.scopes:
            missing = ", ".join(sorted(scopes - principal.scopes))
            raise HTTPError(403, "forbidden", f"{principal.id} lacks the scope(s) {missing}")
        if self.buckets is not None:
            client = request.client
            key = principal.id if principal else f"ip:{client.host if client else '?'}"
            wait = self.buckets.take(key, self.clock.time())
            if wait > 0:
                retry = {"retry-after": str(max(1, int(wait + 0.999)))}
                raise HTTPError(429, "too many requests", f"rate limit for {key}", retry)
        return principal

    def timeout(self, request: Request, route: Route) -> float:
        gateway = self.gateway
        text = request.headers.get(gateway.timeout_header)
        if text is None:
            return route.timeout or gateway.timeout
        try:
            value = float(text)
        except ValueError:
            value = -1.0
        if not 0 < value <= gateway.max_timeout:
            raise invalid(
                "header",
                gateway.timeout_header,
                f"{text!r}: give seconds, more than 0 and at most {gateway.max_timeout:g}",
            )
        return value

    def context(self, traceparent: str | None, deadline: float | None) -> Context:
        """A context whose cause is this HTTP request: one correlation id, one trace."""
        cause = Message(
            id=uuid7(),
            type="seawall.HttpRequest",
            source=self.gateway.source,
            kind="command",
            traceparent=traceparent,
        )
        return self.system.context(self.gateway.source, cause=cause, deadline=deadline)

    async def payload(self, request: Request, plan: _Plan) -> Payload:
        data: dict[str, Any] = {}
        if plan.route.method in BODY_METHODS:
            body = await request.body()
            if body:
                try:
                    decoded = msgspec.json.decode(body)
                except msgspec.DecodeError as exc:
                    raise invalid("body", None, f"not JSON: {exc}") from None
                if not isinstance(decoded, dict):
                    raise invalid("body", None, "expected a JSON object")
                data.update(decoded)
        query = request.query_params
        for name in plan.query_fields:
            if name in query:
                data[name] = query.getlist(name) if name in plan.lists else query[name]
        data.update(request.path_params)
        try:
            payload: Payload = msgspec.convert(data, plan.route.payload, strict=False)
        except msgspec.ValidationError as exc:
            raise located(exc, plan.sources) from None
        return payload

    async def publish(self, channel: str, message: Message, kind: Any) -> None:
        """Put ``message`` on ``channel`` through the system's send middleware, if any."""
        node = self.system.node
        if node.send_chains is None:
            await node.transport.publish(channel, message)
        else:
            out = Outgoing(channel=channel, message=message, kind=kind, service=self.gateway.source)
            await node.send(out)

    # -- the routes ------------------------------------------------------------------------

    async def call(self, request: Request, plan: _Plan) -> Response:
        route = plan.route
        with self.spans.span(route.method, route.path, request.headers) as span:
            try:
                response = await self._call(request, plan, span.traceparent)
            except Exception as exc:
                response = _error(exc, route.errors)
            span.status(response.status_code)
            return response

    async def _call(self, request: Request, plan: _Plan, traceparent: str | None) -> Response:
        route = plan.route
        principal = await self.admit(request, route.scopes)
        cache_key = None
        if route.cache is not None:
            who = principal.id if principal else ""
            cache_key = f"{who}\n{request.url.path}?{request.url.query}"
            hit = self.cache.get(cache_key, self.clock.time())
            if hit is not None:
                headers = {"age": str(int(hit[1])), "x-cache": "hit"}
                return Response(hit[0], media_type=_JSON, headers=headers)
        expand = _expansions(request, route) if route.expand else None
        payload = await self.payload(request, plan)
        timeout = self.timeout(request, route)
        key = None if route.key is None else str(getattr(payload, route.key))
        if route.kind == "command":
            return await self._command(request, route, payload, key, traceparent)
        ctx = self.context(traceparent, self.clock.time() + timeout)
        reply = await ctx.request(
            route.channel, payload, returns=route.returns, key=key, timeout=timeout
        )
        if expand is not None:
            body = await self._expand(expand, route, ctx, reply, payload)
        else:
            body = msgspec.json.encode(reply)
        assert ctx.message is not None
        headers = {"x-correlation-id": ctx.message.id}
        if cache_key is not None and route.cache is not None:
            self.cache.put(cache_key, body, route.cache, self.clock.time())
            headers["x-cache"] = "miss"
        return Response(body, media_type=_JSON, headers=headers)

    async def _command(
        self,
        request: Request,
        route: Route,
        payload: Payload,
        key: str | None,
        traceparent: str | None,
    ) -> Response:
        asked = self.gateway.timeout_header in request.headers
        deadline = self.clock.time() + self.timeout(request, route) if asked else None
        ctx = self.context(traceparent, deadline)
        message = ctx.envelope(payload, key=key)
        if deadline is not None:
            message = _with_deadline(message, deadline)
        await self.publish(route.channel, message, "send")
        assert route.location is not None
        # each value percent-encoded: a Location is a URL, and a header is Latin-1
        fields = {k: quote(str(v), safe="") for k, v in msgspec.structs.asdict(payload).items()}
        location = route.location.format_map(fields | {"id": message.id})
        body = {"id": message.id, "status": "accepted", "location": location}
        headers = {"location": location, "x-correlation-id": message.correlationid or ""}
        return JSONResponse(body, status_code=202, headers=headers)

    async def _expand(
        self, asked: list[str], route: Route, ctx: Context, reply: Any, payload: Payload
    ) -> bytes:
        merged = msgspec.to_builtins(reply)
        if not asked:
            return msgspec.json.encode(merged)
        # every sub-request is sent before any is awaited: they run concurrently
        pending = []
        for name in asked:
            sub = route.expand[name]
            ask = sub.build(reply, payload)
            pending.append(
                (name, ctx.request(sub.channel, ask, returns=sub.returns, timeout=sub.timeout))
            )
        results = await asyncio.gather(*(p for _, p in pending))
        for (name, _), result in zip(pending, results, strict=True):
            merged[name] = msgspec.to_builtins(result)
        return msgspec.json.encode(merged)

    async def stream(self, request: Request, stream: EventStream) -> Response:
        try:
            await self.admit(request, stream.scopes)
        except HTTPError as exc:
            return _error(exc, {})
        hub = self.hubs[stream.name]
        key = None if stream.key is None else str(request.path_params[stream.key])
        client = hub.join(key)
        headers = {"cache-control": "no-cache", "x-accel-buffering": "no"}
        return StreamingResponse(
            hub.frames(client), media_type="text/event-stream", headers=headers
        )

    async def cloudevent(self, request: Request, route: CloudEventsRoute) -> Response:
        with self.spans.span("POST", route.path, request.headers) as span:
            try:
                await self.admit(request, route.scopes)
                body = await request.body()
                node = self.system.node
                message, _ = cloudevent_message(route, node, request.headers, body)
                if message.traceparent is None and span.traceparent is not None:
                    message = msgspec.structs.replace(message, traceparent=span.traceparent)
                await self.publish(route.channel, message, "publish")
                response: Response = JSONResponse({"id": message.id}, status_code=202)
            except Exception as exc:
                response = _error(exc, {})
            span.status(response.status_code)
            return response

    @contextlib.asynccontextmanager
    async def running(self, start_system: bool) -> AsyncIterator[None]:
        async with contextlib.AsyncExitStack() as stack:
            if start_system:
                await stack.enter_async_context(self.system)
            streams = [r for r in self.gateway.routes if isinstance(r, EventStream)]
            async with asyncio.TaskGroup() as tasks:
                running = []
                for stream in streams:
                    group = f"gateway-{self.system.instance}-{stream.name}"
                    hub = self.hubs[stream.name] = EventHub(stream, self.system.node, group)
                    running.append(tasks.create_task(hub.run()))
                    await hub.ready.wait()
                try:
                    yield
                finally:
                    for task in running:
                        task.cancel()
            transport = self.system.transport
            for hub in self.hubs.values():
                await transport.delete(hub.stream.channel, group=hub.group)


def _expansions(request: Request, route: Route) -> list[str]:
    """The names ``?expand=`` asks for, each known to the route (else 422)."""
    text = request.query_params.get("expand", "")
    asked = list(dict.fromkeys(n.strip() for n in text.split(",") if n.strip()))
    unknown = [n for n in asked if n not in route.expand]
    if unknown:
        known = ", ".join(sorted(route.expand))
        raise invalid("query", "expand", f"cannot expand {unknown}; this route expands {known}")
    return asked


def _with_deadline(message: Message, deadline: float) -> Message:
    from datetime import UTC, datetime

    return msgspec.structs.replace(message, deadline=datetime.fromtimestamp(deadline, UTC))


def _error(exc: Exception, errors: Any) -> Response:
    mapped = error_response(exc, errors)
    if mapped is None:
        raise exc
    status, headers, body = mapped
    return JSONResponse(body, status_code=status, headers=headers)


def _endpoint(served: _Served, route: Any) -> Endpoint:
    if isinstance(route, Route):
        plan = _Plan(route)

        async def call(request: Request) -> Response:
            return await served.call(request, plan)

        return call
    if isinstance(route, EventStream):

        async def stream(request: Request) -> Response:
            return await served.stream(request, route)

        return stream

    async def cloudevent(request: Request) -> Response:
        return await served.cloudevent(request, route)

    return cloudevent


def build(gateway: Gateway, system: System, *, start_system: bool) -> Starlette:
    """The Starlette application of ``gateway``, sending through ``system``."""
    served = _Served(gateway, system)
    routes: list[BaseRoute] = []
    for route in gateway.routes:
        method = route.method if isinstance(route, Route) else "GET"
        if isinstance(route, CloudEventsRoute):
            method = "POST"
        routes.append(
            StarletteRoute(route.path, _endpoint(served, route), methods=[method], name=route.name)
        )
    document = gateway.openapi()

    async def openapi(request: Request) -> Response:
        return JSONResponse(document)

    async def docs(request: Request) -> Response:
        return HTMLResponse(DOCS_HTML.format(title=gateway.title))

    routes.append(
        StarletteRoute("/openapi.json", openapi, methods=["GET"], include_in_schema=False)
    )
    routes.append(StarletteRoute("/docs", docs, methods=["GET"], include_in_schema=False))
    middleware = []
    if gateway.cors_origins:
        middleware.append(
            StarletteMiddleware(
                CORSMiddleware,
                allow_origins=list(gateway.cors_origins),
                allow_methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
                allow_headers=["*"],
                expose_headers=["location", "retry-after", "x-correlation-id"],
            )
        )

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with served.running(start_system):
            yield

    app = Starlette(routes=routes, middleware=middleware, lifespan=lifespan)
    app.state.served = served
    return app
