"""The gateway's OpenAPI 3.1 document, made from its routes and the payloads' JSON Schemas.

Path parameters and (for ``GET``/``DELETE``) query parameters are the
payload's fields; a body route's request body is the payload's schema less
its path fields. Replies, 202 acknowledgements, server-sent event streams and
CloudEvents endpoints are described, and every error the gateway may answer
(:mod:`._errors`) with its one error schema. Schemas are msgspec's
(``msgspec.json.schema_components``), in ``components.schemas``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import msgspec

from .._messages.payload import Payload
from ._routes import BODY_METHODS, CloudEventsRoute, EventStream, Route, path_params

if TYPE_CHECKING:
    from ._gateway import Gateway

__all__ = ["DOCS_HTML", "openapi"]

_REF = "#/components/schemas/{name}"

DOCS_HTML = """<!doctype html>
<html><head><meta charset="utf-8"><title>{title}</title>
<link rel="stylesheet" href="https://cdn.jsdelivr.net/npm/swagger-ui-dist@5/swagger-ui.css">
</head><body><div id="ui"></div>
<script src="https://cdn.jsdelivr.net/npm/swagger-ui-dist@5/swagger-ui-bundle.js"></script>
<script>SwaggerUIBundle({{url: "/openapi.json", dom_id: "#ui"}});</script>
<noscript>The API description is at <a href="/openapi.json">/openapi.json</a>.</noscript>
</body></html>
"""
"""``/docs``: Swagger UI from a CDN, reading the locally served ``/openapi.json``."""

_ERROR = {
    "type": "object",
    "properties": {
        "error": {"type": "string"},
        "detail": {},
        "error_type": {"type": "string"},
        "service": {"type": "string"},
    },
    "required": ["error", "detail"],
}


def _error(description: str, retry: bool = False) -> dict[str, Any]:
    response: dict[str, Any] = {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }
    if retry:
        response["headers"] = {
            "Retry-After": {"description": "seconds", "schema": {"type": "string"}}
        }
    return response


class _Builder:
    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        classes: set[type[Payload]] = set()
        for route in gateway.routes:
            if isinstance(route, Route):
                classes.add(route.payload)
                if route.returns is not None:
                    classes.add(route.returns)
                classes.update(e.returns for e in route.expand.values())
            else:
                classes.update(route.types)
        self.classes = sorted(classes, key=lambda c: (c.__name__, c.type_name))
        refs, self.schemas = msgspec.json.schema_components(self.classes, ref_template=_REF)
        self.refs = dict(zip(self.classes, refs, strict=True))
        self.schemas["Error"] = _ERROR

    def fields(self, cls: type[Payload]) -> tuple[dict[str, Any], list[str]]:
        schema = self.schemas[self.refs[cls]["$ref"].rsplit("/", 1)[-1]]
        return schema.get("properties", {}), list(schema.get("required", []))

    def errors(self, route: Route | EventStream | CloudEventsRoute) -> dict[str, Any]:
        responses = {"422": _error("the request does not validate; `detail` names the field")}
        if self.gateway.auth is not None or route.scopes:
            responses["401"] = _error("missing or refused credentials")
            responses["403"] = _error("the caller lacks a scope, or the broker refused")
        if self.gateway.rate_limit is not None:
            responses["429"] = _error("over the caller's rate limit", retry=True)
        if isinstance(route, Route):
            responses["502"] = _error("the service failed, or answered something else")
            responses["503"] = _error("the target is unavailable or shedding load", retry=True)
            responses["504"] = _error("no reply within the deadline")
            for status in sorted(set(route.errors.values())):
                responses[str(status)] = _error("a declared error of the service")
        return responses

    def operation(self, route: Route) -> dict[str, Any]:
        props, required = self.fields(route.payload)
        in_path = path_params(route.path)
        parameters = [
            {"name": n, "in": "path", "required": True, "schema": props.get(n, {})} for n in in_path
        ]
        op: dict[str, Any] = {"operationId": route.name, "summary": route.summary or route.name}
        if route.method in BODY_METHODS:
            body_props = {n: s for n, s in props.items() if n not in in_path}
            body = {
                "type": "object",
                "properties": body_props,
                "required": [n for n in required if n not in in_path],
            }
            op["requestBody"] = {
                "required": True,
                "content": {"application/json": {"schema": body}},
            }
        else:
            for name, schema in props.items():
                if name not in in_path:
                    parameters.append(
                        {
                            "name": name,
                            "in": "query",
                            "required": name in required,
                            "schema": schema,
                        }
                    )
        if route.expand:
            parameters.append(
                {
                    "name": "expand",
                    "in": "query",
                    "required": False,
                    "description": "sub-resources to include, requested concurrently",
                    "style": "form",
                    "explode": False,
                    "schema": {
                        "type": "array",
                        "items": {"type": "string", "enum": sorted(route.expand)},
                        "uniqueItems": True,
                    },
                }
            )
        parameters.append(
            {
                "name": self.gateway.timeout_header,
                "in": "header",
                "required": False,
                "description": f"seconds until the deadline (at most {self.gateway.max_timeout:g})",
                "schema": {"type": "string"},
            }
        )
        op["parameters"] = parameters
        op["responses"] = self.success(route) | self.errors(route)
        return op

    def success(self, route: Route) -> dict[str, Any]:
        if route.kind == "command":
            accepted = {
                "type": "object",
                "properties": {
                    "id": {"type": "string"},
                    "status": {"type": "string"},
                    "location": {"type": "string"},
                },
                "required": ["id", "status", "location"],
            }
            return {
                "202": {
                    "description": "accepted: the command is on its way",
                    "headers": {"Location": {"schema": {"type": "string"}}},
                    "content": {"application/json": {"schema": accepted}},
                }
            }
        assert route.returns is not None
        schema: dict[str, Any] = dict(self.refs[route.returns])
        if route.expand:
            extra = {name: self.refs[e.returns] for name, e in route.expand.items()}
            schema = {"allOf": [schema, {"type": "object", "properties": extra}]}
        return {
            "200": {
                "description": f"the reply, a {route.returns.type_name}",
                "content": {"application/json": {"schema": schema}},
            }
        }

    def stream(self, stream: EventStream) -> dict[str, Any]:
        events = ", ".join(c.type_name for c in stream.types)
        return {
            "operationId": stream.name,
            "summary": stream.summary or f"server-sent events of {stream.channel}: {events}",
            "parameters": [
                {"name": n, "in": "path", "required": True, "schema": {"type": "string"}}
                for n in path_params(stream.path)
            ],
            "responses": {
                "200": {
                    "description": "an endless text/event-stream; each event's data is JSON",
                    "content": {"text/event-stream": {"schema": {"type": "string"}}},
                }
            }
            | self.errors(stream),
        }

    def cloudevents(self, route: CloudEventsRoute) -> dict[str, Any]:
        structured = {
            "type": "object",
            "properties": {
                "specversion": {"type": "string", "const": "1.0"},
                "id": {"type": "string", "minLength": 1},
                "source": {"type": "string", "minLength": 1},
                "type": {"type": "string", "enum": [c.type_name for c in route.types]},
                "data": {"anyOf": [self.refs[c] for c in route.types]},
            },
            "required": ["specversion", "id", "source", "type", "data"],
        }
        return {
            "operationId": route.name,
            "summary": route.summary or f"publish a CloudEvent on {route.channel}",
            "requestBody": {
                "required": True,
                "content": {"application/cloudevents+json": {"schema": structured}},
            },
            "responses": {
                "202": {
                    "description": "published",
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "properties": {"id": {"type": "string"}},
                                "required": ["id"],
                            }
                        }
                    },
                }
            }
            | self.errors(route),
        }


def openapi(gateway: Gateway) -> dict[str, Any]:
    """The OpenAPI 3.1 document of ``gateway``'s routes."""
    builder = _Builder(gateway)
    paths: dict[str, dict[str, Any]] = {}
    for route in gateway.routes:
        item = paths.setdefault(route.path, {})
        if isinstance(route, Route):
            item[route.method.lower()] = builder.operation(route)
        elif isinstance(route, EventStream):
            item["get"] = builder.stream(route)
        else:
            item["post"] = builder.cloudevents(route)
    info = {"title": gateway.title, "version": gateway.version}
    if gateway.description:
        info["description"] = gateway.description
    doc: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": info,
        "paths": paths,
        "components": {"schemas": dict(sorted(builder.schemas.items()))},
    }
    if isinstance(gateway.auth, object) and gateway.auth is not None:
        doc["components"]["securitySchemes"] = _security(gateway)
    return doc


def _security(gateway: Gateway) -> dict[str, Any]:
    from ._auth import ApiKeys, JWTAuth

    auth = gateway.auth
    if isinstance(auth, ApiKeys):
        return {"apiKey": {"type": "apiKey", "in": "header", "name": auth.header}}
    if isinstance(auth, JWTAuth):
        return {"bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}}
    return {}
