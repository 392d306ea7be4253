"""The gateway's routes, declared in Python: what each HTTP endpoint sends where.

Pure declarations, checked when made; :mod:`._app` serves them, :mod:`._openapi`
describes them. A route maps a method and a path to

- a **command** (one-way ``send``; ``202 Accepted`` with a ``Location``),
- a **request** (request/reply; the reply document is the response body), or
- a **query** (a ``GET`` request whose reply may be cached),

naming its target channel, the payload class the path, query and body are
validated into, the reply class and the timeout. An :class:`EventStream`
serves a channel's events as server-sent events, filtered by a key from the
path; a :class:`CloudEventsRoute` takes CloudEvents (HTTP binding) and
publishes each as that event.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import msgspec

from .._exceptions import ConfigurationError
from .._messages.payload import Payload

__all__ = ["CloudEventsRoute", "EventStream", "Expand", "Route", "RouteKind", "path_params"]

RouteKind = Literal["command", "request", "query"]

_PARAM = re.compile(r"{([A-Za-z_]\w*)(?::\w+)?}")
_METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE"})
BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})


def path_params(path: str) -> tuple[str, ...]:
    """The parameter names of a path template: ``("order_id",)`` for ``/orders/{order_id}``."""
    return tuple(_PARAM.findall(path))


def field_names(cls: type[Payload]) -> tuple[str, ...]:
    return tuple(f.name for f in msgspec.structs.fields(cls))


@dataclass(frozen=True, kw_only=True)
class Expand:
    """A sub-request that ``?expand=<name>`` adds to a reply.

    ``build(reply, request)`` makes the sub-request's payload from the main reply
    and the route's own request payload; the sub-replies of one response are
    requested concurrently and merged in under their names.
    """

    channel: str
    build: Callable[[Any, Any], Payload]
    returns: type[Payload]
    timeout: float | None = None
    """Seconds; by default the rest of the request's own deadline."""


def _check_path(where: str, path: str) -> None:
    if not path.startswith("/"):
        raise ConfigurationError(f"{where}: path {path!r} must start with '/'")


@dataclass(frozen=True, kw_only=True)
class Route:
    """One HTTP endpoint in front of a service's command channel."""

    method: str
    path: str
    kind: RouteKind
    channel: str
    payload: type[Payload]
    returns: type[Payload] | None = None
    timeout: float | None = None
    """Seconds until the deadline the message carries; None: the gateway's default."""
    expand: Mapping[str, Expand] = field(default_factory=dict)
    cache: float | None = None
    """Seconds a reply is kept for repeated identical reads (queries only)."""
    errors: Mapping[str, int] = field(default_factory=dict)
    """A remote handler's error type -> HTTP status, instead of 502."""
    location: str | None = None
    """For a command: the ``Location`` template, from the payload's fields and ``{id}``."""
    key: str | None = None
    """The payload field whose value is the message's partition key."""
    scopes: frozenset[str] = frozenset()
    summary: str = ""

    def __post_init__(self) -> None:
        where = f"route {self.method} {self.path}"
        _check_path(where, self.path)
        if self.method not in _METHODS:
            raise ConfigurationError(f"{where}: method must be one of {sorted(_METHODS)}")
        names = field_names(self.payload)
        for name in path_params(self.path):
            if name not in names:
                raise ConfigurationError(
                    f"{where}: path parameter {{{name}}} is not a field of "
                    f"{self.payload.__qualname__} (fields: {', '.join(names) or 'none'})"
                )
        if self.key is not None and self.key not in names:
            raise ConfigurationError(f"{where}: key={self.key!r} is not a payload field")
        if self.kind == "command" and not self.location:
            raise ConfigurationError(
                f"{where}: a command answers 202 Accepted with a Location; give location=, "
                "e.g. '/orders/{order_id}' (payload fields and {id}, the message id)"
            )
        if self.kind != "command" and self.returns is None:
            raise ConfigurationError(f"{where}: a request needs returns=, the reply class")
        if self.cache is not None and self.kind != "query":
            raise ConfigurationError(f"{where}: cache= is for query routes (GET)")
        if self.expand and self.kind == "command":
            raise ConfigurationError(f"{where}: expand= needs a reply; a command has none")
        if self.kind == "query" and self.method != "GET":
            raise ConfigurationError(f"{where}: a query is a GET")
        if "expand" in names and self.expand:
            raise ConfigurationError(f"{where}: 'expand' is a payload field and a query option")

    @property
    def name(self) -> str:
        """An operation id: ``get_orders_order_id``."""
        return re.sub(r"\W+", "_", f"{self.method.lower()}{self.path}").strip("_")


@dataclass(frozen=True, kw_only=True)
class EventStream:
    """``GET path``: a channel's events as server-sent events, for one key.

    ``key`` names a payload field; an event is sent when that field equals the
    path parameter of the same name (all events when None).
    """

    path: str
    channel: str
    types: tuple[type[Payload], ...]
    key: str | None = None
    scopes: frozenset[str] = frozenset()
    buffer: int = 256
    """Events held for one slow client; past it the stream ends (the client reconnects)."""
    summary: str = ""

    def __post_init__(self) -> None:
        where = f"event stream {self.path}"
        _check_path(where, self.path)
        if not self.types:
            raise ConfigurationError(f"{where}: name the event classes it carries (types=)")
        if self.key is not None and self.key not in path_params(self.path):
            raise ConfigurationError(
                f"{where}: key={self.key!r} must also be a path parameter, e.g. "
                f"'/orders/{{{self.key}}}/events'"
            )
        for cls in self.types:
            if self.key is not None and self.key not in field_names(cls):
                raise ConfigurationError(f"{where}: {cls.__qualname__} has no field {self.key!r}")

    @property
    def name(self) -> str:
        return re.sub(r"\W+", "_", f"stream{self.path}").strip("_")


@dataclass(frozen=True, kw_only=True)
class CloudEventsRoute:
    """``POST path``: a CloudEvent, binary or structured, published on ``channel`` as is.

    ``types`` are the event classes accepted (the event's ``type`` picks one,
    its ``data`` must decode as it).
    """

    path: str
    channel: str
    types: tuple[type[Payload], ...]
    scopes: frozenset[str] = frozenset()
    summary: str = ""

    def __post_init__(self) -> None:
        _check_path(f"CloudEvents route {self.path}", self.path)
        if not self.types:
            raise ConfigurationError(
                f"CloudEvents route {self.path}: name the event classes it takes (types=)"
            )

    @property
    def name(self) -> str:
        return re.sub(r"\W+", "_", f"cloudevents{self.path}").strip("_")
