"""Targets: ``MODULE:ATTR`` names the services a process runs, as ``seawall run`` and each
``seawall up`` instance take them.

The attribute may be a :class:`~.system.System`, a :class:`~.service.Service`, a list of
services, or a function returning one of those; services become a system on the transport
given. Errors say which part of the target is wrong.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from typing import Any

from .._exceptions import ConfigurationError
from .service import Service
from .system import System

__all__ = ["load_system"]


def load_system(
    target: str, *, transport: str, grace: float, instance: str | None = None
) -> System:
    """Import ``module:attr`` and make a :class:`System` of it (named ``instance`` if given)."""
    module_name, _, attr = target.partition(":")
    if not module_name or not attr:
        raise ConfigurationError(f"expected MODULE:ATTR (e.g. 'shop.app:system'), got {target!r}")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigurationError(f"cannot import module {module_name!r}: {exc}") from exc
    try:
        obj: Any = getattr(module, attr)
    except AttributeError:
        raise ConfigurationError(f"module {module_name!r} has no attribute {attr!r}") from None
    if callable(obj) and not isinstance(obj, Service | System):
        obj = obj()
    if isinstance(obj, System):
        return obj
    if isinstance(obj, Service):
        obj = [obj]
    if isinstance(obj, Sequence) and obj and all(isinstance(s, Service) for s in obj):
        return System(*obj, transport=transport, grace=grace, instance=instance)
    raise ConfigurationError(
        f"{target} is a {type(obj).__name__}; expected a System, a Service, a list of "
        "services, or a function returning one of those"
    )
