"""Who may use the broker server, and how much: its configuration and access rules.

:class:`ServerConfig` holds the server's limits and its clients; each
:class:`Client` is a token with the channel patterns it may publish and
subscribe to, the consumer groups it may join, and optionally how many
connections it may hold. With no clients configured the server is open to
anyone who can reach it. Tokens are secrets: they never appear in a repr or a
log line, and they are compared in constant time. How the rules apply to one
connection, reply inboxes included, is :mod:`.rights`.

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
from .._wire.protocol import DEFAULT_HEARTBEAT, DEFAULT_MAX_FRAME, MAX_LENGTH, MAX_TOKEN

__all__ = ["Client", "ServerConfig", "load_server_config"]

DEFAULT_MAX_MESSAGE = 1 << 20
DEFAULT_HELLO_TIMEOUT = 5.0
DEFAULT_MAX_CONNECTIONS = 1000
FRAME_OVERHEAD = 1024
"""Room a frame needs beyond the message it carries (op, channel name, numbers)."""


@dataclass(frozen=True, kw_only=True)
class Client:
    """A client of the broker server: its token and the channels and groups it may use.

    ``publish``, ``subscribe`` and ``groups`` are glob patterns (``fnmatch``,
    case sensitive: ``*`` matches any run of characters, dots included, ``?``
    one character), e.g. ``("orders", "orders.*")``. Declaring a channel needs
    either right to it. Subscribing needs the channel right and a ``groups``
    pattern matching the consumer group; ``groups=None`` (the default) means
    the client's own name only, the group a service named like its client
    joins. ``max_connections`` bounds the connections this client holds at
    once (None: only the server's own limit applies).
    """

    name: str
    token: str = field(repr=False)
    publish: tuple[str, ...] = ()
    subscribe: tuple[str, ...] = ()
    groups: tuple[str, ...] | None = None
    max_connections: int | None = None

    def __post_init__(self) -> None:
        if not self.name:
            raise ConfigurationError("a broker client needs a name (used in logs)")
        if len(self.token) < 16:
            raise ConfigurationError(
                f"the token of broker client {self.name!r} is shorter than 16 characters; "
                "use a long random one (e.g. python -c 'import secrets; "
                "print(secrets.token_urlsafe())')"
            )
        if len(self.token.encode()) > MAX_TOKEN:
            raise ConfigurationError(
                f"the token of broker client {self.name!r} is longer than {MAX_TOKEN} bytes, "
                "more than a Hello carries; use a shorter random one"
            )
        for pattern in (*self.publish, *self.subscribe, *(self.groups or ())):
            if not isinstance(pattern, str) or not pattern:
                raise ConfigurationError(
                    f"broker client {self.name!r} has an empty or non-text pattern "
                    f"{pattern!r}; write glob patterns such as 'orders.*'"
                )
        if self.max_connections is not None and self.max_connections < 1:
            raise ConfigurationError(
                f"broker client {self.name!r}: max_connections must be at least 1, "
                f"got {self.max_connections}"
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

    @property
    def group_patterns(self) -> tuple[str, ...]:
        """The ``groups`` patterns, or the client's own name when none are configured."""
        return (self.name,) if self.groups is None else self.groups

    def may_join(self, group: str) -> bool:
        """Whether this client may join consumer group ``group`` (on a channel it may read)."""
        return any(fnmatchcase(group, pattern) for pattern in self.group_patterns)


@dataclass(frozen=True, kw_only=True)
class ServerConfig:
    """Limits and clients of a broker server.

    ``heartbeat`` is the longest interval the server accepts (a client may ask
    for a shorter one); a peer quiet for three intervals is dropped.
    ``auto_create=False`` refuses publishing or subscribing to channels the
    broker does not have yet (``unknown-channel``). With no ``tokens`` the
    server is open; with some, every connection must present one of them.
    ``hello_timeout`` is how long a new connection may take to finish its TLS
    handshake and send Hello; ``max_connections`` bounds the connections open
    at once, authenticated or not (more are refused with ``unavailable``).
    """

    max_frame: int = DEFAULT_MAX_FRAME
    max_message: int = DEFAULT_MAX_MESSAGE
    heartbeat: float = DEFAULT_HEARTBEAT
    auto_create: bool = True
    hello_timeout: float = DEFAULT_HELLO_TIMEOUT
    max_connections: int = DEFAULT_MAX_CONNECTIONS
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
        if not 0 < self.hello_timeout <= 300:
            raise ConfigurationError(
                f"hello_timeout must be 0 < seconds <= 300, got {self.hello_timeout}"
            )
        if self.max_connections < 1:
            raise ConfigurationError(
                f"max_connections must be at least 1, got {self.max_connections}"
            )
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
        hello_timeout = 5.0
        max_connections = 1000

        [[client]]
        name = "orders"
        token = "a long random secret"
        publish = ["orders", "orders.*", "billing", "_inbox.*"]
        subscribe = ["orders", "_inbox.*"]
        groups = ["orders", "orders-*"]    # default: ["orders"], the client's name
        max_connections = 16               # default: no limit of its own

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
    "hello_timeout": (int, float),
    "max_connections": int,
}
_CLIENT_KEYS = {"name", "token", "publish", "subscribe", "groups", "max_connections"}


def _config_from(data: dict[str, Any]) -> ServerConfig:
    unknown = set(data) - set(_LIMITS) - {"client"}
    if unknown:
        raise ConfigurationError(
            f"unknown keys {sorted(unknown)}; known: {sorted([*_LIMITS, 'client'])}"
        )
    for key, kind in _LIMITS.items():
        if key in data:
            _check_kind(key, data[key], kind)
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
    rights: dict[str, Any] = {}
    for key in ("publish", "subscribe", "groups"):
        patterns = table.get(key, [])
        if not isinstance(patterns, list) or not all(isinstance(p, str) for p in patterns):
            raise ConfigurationError(f"{where}: {key} must be a list of glob patterns")
        if key in table:
            rights[key] = tuple(patterns)
    if "max_connections" in table:
        _check_kind(f"{where}: max_connections", table["max_connections"], int)
        rights["max_connections"] = table["max_connections"]
    return Client(name=table["name"], token=table["token"], **rights)


def _check_kind(key: str, value: Any, kind: type | tuple[type, ...]) -> None:
    # bool is an int to isinstance, but `max_connections = true` is a mistake
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        name = "number" if isinstance(kind, tuple) else _KIND_NAMES.get(kind, kind.__name__)
        raise ConfigurationError(f"{key} must be a {name}, got {value!r}")


_KIND_NAMES = {int: "whole number", bool: "boolean (true or false)"}
