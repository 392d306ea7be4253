"""What the gateway answers when something fails: one table from seawall errors to HTTP.

Pure: fed the exception (and the route's declared mapping of remote error
types), returns status, headers and a JSON body ``{"error": ..., "detail": ...}``.

============================================  =====================================
``DeadlineExceeded``                          504 Gateway Timeout
``RemoteError``                               the route's ``errors[error_type]``, else 502
``UnexpectedReply``                           502 Bad Gateway
``CircuitOpen``, ``Overloaded``, ``ChannelFull``  503 with ``Retry-After`` (whole seconds, up)
``UnknownService``                            503
``PermissionDenied``                          403 Forbidden
validation (:class:`Invalid`)                 422, naming the field (``loc``)
============================================  =====================================
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

import msgspec

from .._exceptions import (
    ChannelFull,
    CircuitOpen,
    DeadlineExceeded,
    Overloaded,
    PermissionDenied,
    RemoteError,
    SeawallError,
    UnexpectedReply,
    UnknownService,
)

__all__ = ["HTTPError", "Invalid", "error_response", "invalid"]

_AT = re.compile(r" - at `\$((?:\.\w+|\[\d+\])*)`")
_MISSING = re.compile(r"missing required field `(\w+)`")


class HTTPError(Exception):
    """An answer the gateway gives itself: a status, a short error name and a detail."""

    def __init__(
        self,
        status: int,
        error: str,
        detail: Any,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(f"{status} {error}: {detail}")
        self.status = status
        self.error = error
        self.detail = detail
        self.headers = dict(headers or {})


class Invalid(HTTPError):
    """422: the request does not validate; ``detail`` lists each problem with its ``loc``."""

    def __init__(self, problems: list[dict[str, Any]]) -> None:
        super().__init__(422, "invalid request", problems)


def invalid(where: str, field: str | None, message: str) -> Invalid:
    """One problem: ``where`` is ``path``, ``query``, ``body`` or ``header``."""
    loc: list[str] = [where] if field is None else [where, *field.split(".")]
    return Invalid([{"loc": loc, "msg": message}])


def located(exc: msgspec.ValidationError, sources: Mapping[str, str]) -> Invalid:
    """A msgspec validation error as a 422 naming the field; ``sources``: field -> where."""
    text = str(exc)
    missing = _MISSING.search(text)
    at = _AT.search(text)
    path = at.group(1).lstrip(".") if at else ""
    if missing is not None:
        path = f"{path}.{missing.group(1)}" if path else missing.group(1)
    path = path.replace("[", ".").replace("]", "")
    first = path.split(".", 1)[0]
    message = _AT.sub("", text)
    return invalid(sources.get(first, "body"), path or None, message)


def _retry_after(seconds: float) -> dict[str, str]:
    return {"retry-after": str(max(1, math.ceil(seconds)))}


def error_response(
    exc: BaseException, errors: Mapping[str, int]
) -> tuple[int, dict[str, str], dict[str, Any]] | None:
    """(status, headers, body) for a seawall error; None for one that is a bug (500)."""
    if isinstance(exc, HTTPError):
        return exc.status, exc.headers, {"error": exc.error, "detail": exc.detail}
    if not isinstance(exc, SeawallError):
        return None
    status, headers = _status(exc, errors)
    if status is None:
        return None
    body: dict[str, Any] = {"error": type(exc).__name__, "detail": str(exc)}
    if isinstance(exc, RemoteError):
        body["error_type"] = exc.error_type
        body["service"] = exc.service
    return status, headers, body


def _status(exc: SeawallError, errors: Mapping[str, int]) -> tuple[int | None, dict[str, str]]:
    if isinstance(exc, DeadlineExceeded):
        return 504, {}
    if isinstance(exc, RemoteError):
        return errors.get(exc.error_type, 502), {}
    if isinstance(exc, UnexpectedReply):
        return 502, {}
    if isinstance(exc, CircuitOpen | Overloaded):
        return 503, _retry_after(exc.retry_after)
    if isinstance(exc, ChannelFull):
        return 503, _retry_after(float(getattr(exc, "retry_after", 1.0)))
    if isinstance(exc, UnknownService):
        return 503, {}
    if isinstance(exc, PermissionDenied):
        return 403, {}
    return None, {}
