"""Who is calling: the gateway's pluggable authentication hook, with API keys and JWT built in.

An :class:`Authenticate` hook takes the request's headers and returns a
:class:`Principal`, or None for an anonymous caller, or raises
:class:`Unauthorized` (answered 401, with ``WWW-Authenticate``). A route that
names ``scopes`` answers 403 to a principal without them, and 401 to nobody.
The principal's ``id`` is also the rate limit's key.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from .._exceptions import ConfigurationError

__all__ = ["ApiKeys", "Authenticate", "JWTAuth", "Principal", "Unauthorized"]


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated caller."""

    id: str
    scopes: frozenset[str] = frozenset()
    claims: Mapping[str, Any] = field(default_factory=dict)


class Unauthorized(Exception):
    """The request's credentials are missing or wrong (HTTP 401)."""

    def __init__(self, message: str, challenge: str = "Bearer") -> None:
        super().__init__(message)
        self.challenge = challenge


class Authenticate(Protocol):
    """The hook: ``async def authenticate(headers) -> Principal | None``."""

    def __call__(self, headers: Mapping[str, str], /) -> Awaitable[Principal | None]: ...


class ApiKeys:
    """API keys in a header (``X-API-Key`` by default): each key names its principal."""

    def __init__(self, keys: Mapping[str, Principal | str], *, header: str = "x-api-key") -> None:
        self.header = header.lower()
        self._keys = {
            key: who if isinstance(who, Principal) else Principal(who) for key, who in keys.items()
        }

    async def __call__(self, headers: Mapping[str, str], /) -> Principal | None:
        given = headers.get(self.header)
        if given is None:
            return None
        for key, principal in self._keys.items():  # constant time per key
            if hmac.compare_digest(key.encode(), given.encode()):
                return principal
        raise Unauthorized(f"the API key in {self.header!r} is not known", challenge="ApiKey")


class JWTAuth:
    """``Authorization: Bearer <JWT>``, verified by PyJWT; ``sub`` is the principal.

    ``key`` is the HMAC secret or the public key of ``algorithms``; ``audience``
    and ``issuer``, when given, must match. Scopes come from the ``scope``
    claim (space-separated, as OAuth 2 writes it) or a ``scopes`` list.
    """

    def __init__(
        self,
        key: str | bytes,
        *,
        algorithms: Sequence[str] = ("HS256",),
        audience: str | None = None,
        issuer: str | None = None,
        leeway: float = 0.0,
    ) -> None:
        try:
            import jwt
        except ImportError as exc:  # pragma: no cover - the gateway extra brings it
            raise ConfigurationError("JWTAuth needs PyJWT: pip install 'seawall[gateway]'") from exc
        self._jwt = jwt
        self.key = key
        self.algorithms = list(algorithms)
        self.audience = audience
        self.issuer = issuer
        self.leeway = leeway

    async def __call__(self, headers: Mapping[str, str], /) -> Principal | None:
        value = headers.get("authorization")
        if value is None:
            return None
        scheme, _, token = value.partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise Unauthorized("the Authorization header is not 'Bearer <token>'")
        try:
            claims = self._jwt.decode(
                token.strip(),
                self.key,
                algorithms=self.algorithms,
                audience=self.audience,
                issuer=self.issuer,
                leeway=self.leeway,
                options={"require": ["sub"]},
            )
        except self._jwt.InvalidTokenError as exc:
            raise Unauthorized(f"the bearer token was refused: {exc}") from None
        return Principal(str(claims["sub"]), _scopes(claims), claims)


def _scopes(claims: Mapping[str, Any]) -> frozenset[str]:
    scope = claims.get("scope")
    if isinstance(scope, str):
        return frozenset(scope.split())
    scopes = claims.get("scopes")
    if isinstance(scopes, list):
        return frozenset(str(s) for s in scopes)
    return frozenset()
