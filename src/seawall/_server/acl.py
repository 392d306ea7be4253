"""Who may use the broker server, and how much: its configuration and access rules.

:class:`ServerConfig` holds the server's limits and its clients; each
:class:`Client` is a token with the channel patterns it may publish and
subscribe to. With no clients configured the server is open to anyone who can
reach it. Tokens are secrets: they never appear in a repr or a log line, and
they are compared in constant time.

The CLI reads the configuration from a TOML file with
:func:`load_server_config`; code passes the objects directly.
"""

from __future__ import annotations

import hmac
import tomllib
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

from .._exceptions import ConfigurationError
from .._wire.protocol import DEFAULT_HEARTBEAT, DEFAULT_MAX_FRAME, MAX_LENGTH

__all__ = ["Client", "ServerConfig", "load_server_config"]

DEFAULT_MAX_MESSAGE = 1 << 20
FRAME_OVERHEAD = 1024
"""Room a frame needs beyond the message it carries (op, channel name, numbers)."""


@dataclass(frozen=True, kw_only=True)
class Client:
    """A client of the broker server: its token and the channels it may use.

    ``publish`` and ``subscribe`` are glob patterns (``fnmatch``, case
    sensitive: ``*`` matches any run of characters, dots included, ``?`` one
    character), e.g. ``("orders", "orders.*")``. Declaring a channel needs
    either right to it.
    """

    name: str
    token: str = field(repr=False)
    publish: tuple[str, ...] = ()
    subscribe: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.name:
            raise ConfigurationError("a broker client needs a name (used in logs)")
        if len(self.token) < 16:
            raise ConfigurationError(
                f"the token of broker client {self.name!r} is shorter than 16 characters; "
                "use a long random one (e.g. python -c 'import secrets; "
                "print(secrets.token_urlsafe())')"
            )
        for pattern in (*self.publish, *self.subscribe):
            if not isinstance(pattern, str) or not pattern:
                raise ConfigurationError(
                    f"broker client {self.name!r} has an empty or non-text channel pattern "
                    f"{pattern!r}; write glob patterns such as 'orders.*'"
                )

    def may_publish(self, channel: str) -> bool:
        """Whether this client may publish to ``channel``."""
        return any(fnmatchcase(channel, pattern) for pattern in self.publish)

    def may_subscribe(self, channel: str) -> bool:
        """Whether this client may subscribe to ``channel``."""
        return any(fnmatchcase(channel, pattern) for pattern in self.subscribe)

    def may_declare(self, channel: str) -> bool:
        """Whether this client may declare ``channel``: either right will do."""
        return self.may_publish(channel) or self.may_subscribe(channel)


@dataclass(frozen=True, kw_only=True)
class ServerConfig:
    """Limits and clients of a broker server.

    ``heartbeat`` is the longest interval the server accepts (a client may ask
    for a shorter one); a peer quiet for three intervals is dropped.
    ``auto_create=False`` refuses publishing or subscribing to channels the
    broker does not have yet (``unknown-channel``). With no ``tokens`` the
    server is open; with some, every connection must present one of them.
    """

    max_frame: int = DEFAULT_MAX_FRAME
    max_message: int = DEFAULT_MAX_MESSAGE
    heartbeat: float = DEFAULT_HEARTBEAT
    auto_create: bool = True
    tokens: tuple[Client, ...] = ()

    def __post_init__(self) -> None:
        if not 1 <= self.max_message <= self.max_frame - FRAME_OVERHEAD:
            raise ConfigurationError(
                f"max_message ({self.max_message}) must be at least 1 and leave "
                f"{FRAME_OVERHEAD} bytes of max_frame ({self.max_frame}) for the frame around it"
            )
        if self.max_frame > MAX_LENGTH:
            raise ConfigurationError(f"max_frame must be at most {MAX_LENGTH} bytes")
        if not 0 < self.heartbeat <= 3600:
            raise ConfigurationError(f"heartbeat must be 0 < seconds <= 3600, got {self.heartbeat}")
        names = [client.name for client in self.tokens]
        if len(set(names)) != len(names):
            raise ConfigurationError(f"broker client names must be unique, got {sorted(names)}")
        if len({client.token for client in self.tokens}) != len(self.tokens):
            raise ConfigurationError(
                "two broker clients share a token; give each client its own (names: "
                f"{', '.join(names)})"
            )

    @property
    def open(self) -> bool:
        """Whether anyone may connect: no tokens are configured."""
        return not self.tokens

    def authenticate(self, token: str | None) -> Client | None:
        """The client holding ``token``, or None; constant time per configured token."""
        presented = (token or "").encode()
        found = None
        for client in self.tokens:  # no early exit: timing says nothing about which matched
            if hmac.compare_digest(presented, client.token.encode()):
                found = client
        return found


def load_server_config(path: str | Path) -> ServerConfig:
    """Read a :class:`ServerConfig` from a TOML file.

    The format (every key optional; sizes in bytes, times in seconds)::

        max_frame = 4194304
        max_message = 1048576
        heartbeat = 10.0
        auto_create = true

        [[client]]
        name = "orders"
        token = "a long random secret"
        publish = ["orders", "orders.*", "billing"]
        subscribe = ["orders", "inbox.*"]

    Unknown keys are refused, so a typo does not silently open a door.
    """
    path = Path(path)
    try:
        with path.open("rb") as file:
            data = tomllib.load(file)
    except OSError as exc:
        raise ConfigurationError(f"cannot read broker config {path}: {exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigurationError(f"broker config {path} is not valid TOML: {exc}") from exc
    try:
        return _config_from(data)
    except (TypeError, ConfigurationError) as exc:
        raise ConfigurationError(f"broker config {path}: {exc}") from None


_LIMITS: dict[str, type | tuple[type, ...]] = {
    "max_frame": int,
    "max_message": int,
    "heartbeat": (int, float),
    "auto_create": bool,
}
_CLIENT_KEYS = {"name", "token", "publish", "subscribe"}


def _config_from(data: dict[str, Any]) -> ServerConfig:
    unknown = set(data) - set(_LIMITS) - {"client"}
    if unknown:
        raise ConfigurationError(
            f"unknown keys {sorted(unknown)}; known: {sorted([*_LIMITS, 'client'])}"
        )
    for key, kind in _LIMITS.items():
        if key in data and not isinstance(data[key], kind):
            raise ConfigurationError(f"{key} must be a {_kind_name(kind)}, got {data[key]!r}")
    clients = data.get("client", [])
    if not isinstance(clients, list):
        raise ConfigurationError("clients are written as [[client]] tables")
    limits = {key: data[key] for key in _LIMITS if key in data}
    return ServerConfig(**limits, tokens=tuple(_client_from(i, c) for i, c in enumerate(clients)))


def _client_from(index: int, table: Any) -> Client:
    where = f"[[client]] number {index + 1}"
    if not isinstance(table, dict):
        raise ConfigurationError(f"{where} is not a table")
    unknown = set(table) - _CLIENT_KEYS
    if unknown:
        raise ConfigurationError(f"{where} has unknown keys {sorted(unknown)}")
    for key in ("name", "token"):
        if not isinstance(table.get(key), str):
            raise ConfigurationError(f"{where} needs a text {key!r}")
    rights = {}
    for key in ("publish", "subscribe"):
        patterns = table.get(key, [])
        if not isinstance(patterns, list) or not all(isinstance(p, str) for p in patterns):
            raise ConfigurationError(f"{where}: {key} must be a list of glob patterns")
        rights[key] = tuple(patterns)
    return Client(name=table["name"], token=table["token"], **rights)


def _kind_name(kind: type | tuple[type, ...]) -> str:
    return "number" if isinstance(kind, tuple) else kind.__name__
