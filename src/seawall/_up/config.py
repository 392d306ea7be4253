"""``seawall.toml``: the system ``seawall up`` runs, read and checked once.

Part of the edges layer (CLI). The file names the transport, where the run
keeps its files, the restart policy, extra environment for every service
process, and each service with its ``MODULE:ATTR`` target and instance count::

    transport = "embedded"        # the broker server seawall up starts; or "nats://host:port"
    state = ".seawall"            # broker data, logs and status files (relative to this file)
    grace = 5.0                   # seconds a stopping service may take to drain
    listen = "127.0.0.1:7400"     # also serve the broker on TCP: seawall://127.0.0.1:7400

    [restart]                     # one-for-one, per instance
    max_restarts = 5
    within = 30.0

    [env]                         # extra environment for every service process
    FTGO_DECLINE_EVERY = "10"

    [services.kitchen]
    target = "examples.ftgo.kitchen:service"
    instances = 2

    [services.storefront]         # an HTTP API gateway (seawall.gateway), one process
    target = "examples.ftgo.storefront:gateway"
    listen = "127.0.0.1:8080"

The transport may instead be a table, whose ``options`` are the adapter's
options (:mod:`seawall.transports`: ``NatsOptions`` for ``nats://``,
``EmbeddedOptions`` for the broker ``seawall up`` starts, …), checked here::

    [transport]
    url = "nats://127.0.0.1:4222"  # or "embedded" (the default)
    [transport.options]
    replicas = 3
    ack_wait = 60.0

Options in the URL's query win over the table. For a URL, the table's options
are added to the URL's query, which is how every service process gets them;
for ``embedded`` they go to ``seawall broker`` (``--sync``, ``--option``),
all but ``max_message_bytes``. The top-level ``sync`` of earlier files is the
same as ``[transport.options] sync``. ``listen`` (``HOST:PORT``, embedded only)
gives that broker a fixed TCP address beside the unix socket its services use,
so that code outside the system can reach it (``seawall://HOST:PORT``).

Every mistake is reported as a :class:`~seawall.ConfigurationError` naming the
file, the key and what to write instead. Only the CLI reads the environment:
``SEAWALL_TRANSPORT`` replaces the transport, options included (a URL carries
its own in its query); this module takes values.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from .._exceptions import ConfigurationError
from .._fsync import parse_sync
from .._runtime.supervisor import RestartIntensity
from .._transport.options import redact, with_options
from .._transport.schemes import options_type
from ..transports._options import EmbeddedOptions

__all__ = ["EMBEDDED", "ServiceSpec", "UpConfig", "load_up_config", "parse_up_config"]

EMBEDDED = "embedded"
"""The ``transport`` value that makes ``seawall up`` start its own broker server."""

_TOP_KEYS = {"transport", "state", "grace", "sync", "listen", "restart", "env", "services"}
_SERVICE_KEYS = {"target", "instances", "env", "listen"}
_RESTART_KEYS = {"max_restarts", "within", "initial_backoff", "max_backoff", "multiplier"}
_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_-]*$")
_TARGET = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")
_TRANSPORT_KEYS = {"url", "options"}


@dataclass(frozen=True, kw_only=True)
class ServiceSpec:
    """One service of the system: what to import and how many processes run it."""

    name: str
    target: str
    """``MODULE:ATTR``, as ``seawall run`` takes it."""
    instances: int = 1
    env: Mapping[str, str] = field(default_factory=dict)
    listen: str | None = None
    """``HOST:PORT``: the target is an HTTP API gateway (:mod:`seawall.gateway`) served there."""


@dataclass(frozen=True, kw_only=True)
class UpConfig:
    """A whole system as ``seawall up`` runs it."""

    root: Path
    """The directory of the file: services are imported from here, relative paths start here."""
    services: tuple[ServiceSpec, ...]
    transport: str = EMBEDDED
    """``embedded``, or the URL every service connects to (its options in the query)."""
    state: Path = Path(".seawall")
    grace: float = 5.0
    broker: EmbeddedOptions = field(default_factory=EmbeddedOptions)
    """The options of the broker ``seawall up`` starts when the transport is ``embedded``."""
    intensity: RestartIntensity = field(default_factory=RestartIntensity)
    env: Mapping[str, str] = field(default_factory=dict)
    listen: str | None = None
    """``HOST:PORT`` where the broker ``seawall up`` starts also accepts TCP clients."""
    file: Path | None = None
    """The file read, to name it in messages."""

    @property
    def embedded(self) -> bool:
        """Whether ``seawall up`` serves the broker itself."""
        return self.transport == EMBEDDED

    @property
    def state_dir(self) -> Path:
        return self.state if self.state.is_absolute() else self.root / self.state


def load_up_config(path: str | Path) -> UpConfig:
    """Read and check ``path`` (a ``seawall.toml``)."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigurationError(
            f"cannot read {path}: {exc.strerror or exc}; give the path of a seawall.toml"
        ) from exc
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigurationError(f"{path} is not valid TOML: {exc}") from exc
    config = parse_up_config(data, where=str(path), root=path.resolve().parent)
    return replace(config, file=path)


def parse_up_config(data: Mapping[str, Any], *, where: str, root: Path) -> UpConfig:
    """Check the parsed TOML ``data`` of the file ``where``."""
    _no_unknown(data, _TOP_KEYS, where, "")
    services = _services(data.get("services"), where)
    transport, options = _transport(data.get("transport", EMBEDDED), where)
    broker = _broker(options if transport == EMBEDDED else {}, data, where)
    if transport != EMBEDDED and options:
        transport = _with_options(transport, options, where)
    grace = _number(data, "grace", where, 5.0)
    if grace < 0:
        raise ConfigurationError(f"{where}: grace must be >= 0 seconds; got {grace}")
    return UpConfig(
        root=root,
        services=services,
        transport=transport,
        state=Path(_text(data, "state", where, ".seawall")),
        grace=grace,
        broker=broker,
        intensity=_intensity(data.get("restart", {}), where),
        env=_env(data.get("env", {}), where, "env"),
        listen=_listen(data, transport, where),
    )


def _listen(data: Mapping[str, Any], transport: str, where: str) -> str | None:
    """The broker's TCP address, ``HOST:PORT``; only for the broker seawall up starts."""
    if "listen" not in data:
        return None
    listen = _text(data, "listen", where, "")
    host, sep, port = listen.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) <= 65535:
        raise ConfigurationError(
            f'{where}: listen must be HOST:PORT, e.g. "127.0.0.1:7400"; got {listen!r}'
        )
    if transport != EMBEDDED:
        raise ConfigurationError(
            f"{where}: listen is the address of the broker seawall up starts, and with "
            f"transport = {redact(transport)!r} it starts none; remove listen"
        )
    return listen


def _transport(value: Any, where: str) -> tuple[str, dict[str, Any]]:
    """The transport (``embedded`` or a URL) and the options its table gives."""
    options: Any = {}
    if isinstance(value, dict):
        _no_unknown(value, _TRANSPORT_KEYS, where, "transport.")
        url = _text(value, "url", where, EMBEDDED, key_name="transport.url")
        options = value.get("options", {})
        if not isinstance(options, dict):
            raise ConfigurationError(
                f"{where}: transport.options must be a table ([transport.options]) of the "
                "adapter's options, e.g. replicas = 3"
            )
    else:
        url = _text({"transport": value}, "transport", where, EMBEDDED)
    if url != EMBEDDED and "://" not in url:
        raise ConfigurationError(
            f'{where}: transport = {url!r} is not a URL; write "embedded" or a URL '
            'such as "nats://127.0.0.1:4222"'
        )
    return url, options


def _broker(options: dict[str, Any], data: Mapping[str, Any], where: str) -> EmbeddedOptions:
    """The options of the broker seawall up starts; ``sync`` may be a top-level key."""
    place = f"{where}: [transport.options]"
    if "max_message_bytes" in options:
        raise ConfigurationError(
            f"{place}: max_message_bytes cannot be set for the broker seawall up starts "
            "(it takes the broker server's max_message, 1 MiB)"
        )
    broker = EmbeddedOptions.from_mapping(options, where=place)
    if "sync" in data:
        if "sync" in options:
            raise ConfigurationError(f"{where}: sync is given twice; keep [transport.options] sync")
        sync = parse_sync(data["sync"], where=where)
        broker = broker.merged({"sync": sync}, where=where)
    return broker


def _with_options(url: str, options: dict[str, Any], where: str) -> str:
    """``url`` with ``options`` in its query, checked when the adapter's options are known."""
    try:
        kind = options_type(url)
        if kind is not None:
            checked = kind.from_mapping(options, where="[transport.options]")
            kind.resolve(checked, url=url)  # the URL's own query too
    except ConfigurationError as exc:
        raise ConfigurationError(f"{where}: {exc}") from None
    return with_options(url, options)


def _services(table: Any, where: str) -> tuple[ServiceSpec, ...]:
    if not isinstance(table, dict) or not table:
        raise ConfigurationError(
            f"{where}: no [services.NAME] table; add at least one, e.g.\n"
            '[services.orders]\ntarget = "myapp.orders:service"'
        )
    specs = []
    for name, entry in table.items():
        key = f"services.{name}"
        if not _NAME.match(name):
            raise ConfigurationError(
                f"{where}: [{key}]: a service name starts with a letter and holds letters, "
                "digits, '-' and '_' only"
            )
        if not isinstance(entry, dict):
            raise ConfigurationError(f"{where}: {key} must be a table ([{key}]), not a value")
        _no_unknown(entry, _SERVICE_KEYS, where, f"{key}.")
        target = entry.get("target")
        if not isinstance(target, str) or not _TARGET.match(target):
            raise ConfigurationError(
                f'{where}: {key}.target must be MODULE:ATTR (e.g. "shop.orders:service"); '
                f"got {target!r}"
            )
        instances = entry.get("instances", 1)
        if not isinstance(instances, int) or isinstance(instances, bool) or instances < 1:
            raise ConfigurationError(
                f"{where}: {key}.instances must be a whole number >= 1; got {instances!r}"
            )
        env = _env(entry.get("env", {}), where, f"{key}.env")
        listen = _gateway_listen(entry.get("listen"), instances, where, key)
        specs.append(
            ServiceSpec(name=name, target=target, instances=instances, env=env, listen=listen)
        )
    return tuple(specs)


def _gateway_listen(value: Any, instances: int, where: str, key: str) -> str | None:
    """A gateway unit's ``listen``: one process on one ``HOST:PORT``."""
    if value is None:
        return None
    if not isinstance(value, str) or not re.match(r"^\[?[\w.:-]+\]?:\d{1,5}$", value):
        raise ConfigurationError(
            f'{where}: {key}.listen must be "HOST:PORT" (e.g. "127.0.0.1:8080"); got {value!r}'
        )
    if instances != 1:
        raise ConfigurationError(
            f"{where}: {key} has listen = {value!r} and {instances} instances; a gateway unit "
            "runs one process on its address: drop instances, or declare a unit per address"
        )
    return value


def _intensity(table: Any, where: str) -> RestartIntensity:
    if not isinstance(table, dict):
        raise ConfigurationError(f"{where}: restart must be a table ([restart])")
    _no_unknown(table, _RESTART_KEYS, where, "restart.")
    values: dict[str, Any] = {}
    for key, value in table.items():
        if key == "max_restarts":
            if not isinstance(value, int) or isinstance(value, bool):
                raise ConfigurationError(f"{where}: restart.{key} must be a whole number")
            values[key] = value
        else:
            values[key] = _number(table, key, f"{where}: restart", 0.0)
    try:
        return RestartIntensity(**values)
    except ConfigurationError as exc:
        raise ConfigurationError(f"{where}: [restart]: {exc}") from None


def _env(table: Any, where: str, key: str) -> dict[str, str]:
    if not isinstance(table, dict) or not all(isinstance(v, str) for v in table.values()):
        raise ConfigurationError(
            f'{where}: {key} must be a table of strings, e.g. [{key}] NAME = "value"'
        )
    return dict(table)


def _no_unknown(table: Mapping[str, Any], known: set[str], where: str, prefix: str) -> None:
    unknown = sorted(set(table) - known)
    if unknown:
        raise ConfigurationError(
            f"{where}: unknown key {prefix}{unknown[0]}; the keys here are "
            f"{', '.join(prefix + k for k in sorted(known))}"
        )


def _text(
    table: Mapping[str, Any], key: str, where: str, default: str, *, key_name: str = ""
) -> str:
    value = table.get(key, default)
    if not isinstance(value, str):
        raise ConfigurationError(f"{where}: {key_name or key} must be a string; got {value!r}")
    return value


def _number(table: Mapping[str, Any], key: str, where: str, default: float) -> float:
    value = table.get(key, default)
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise ConfigurationError(f"{where}: {key} must be a number; got {value!r}")
    return float(value)
