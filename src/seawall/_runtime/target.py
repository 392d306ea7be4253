"""Targets: ``MODULE:ATTR`` names the services a process runs, as ``seawall run`` and each
``seawall up`` instance take them.

The attribute may be a :class:`~.system.System`, a :class:`~.service.Service`, a list of
services, or a function (taking no arguments) returning one of those; services become a
system on the transport given. Every mistake is a :class:`~seawall.ConfigurationError`
that says what the target is instead, where it looked, and what would run: a module
that cannot be found or has a syntax error, a missing attribute, a class (a message
payload, say) named by mistake, a function that wants arguments or returns something
else. Exceptions raised by the user's own code while it is imported or called are
left as they are, with their traceback.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Sequence
from types import ModuleType
from typing import Any

from .._exceptions import ConfigurationError
from .._messages.payload import Payload
from .service import Service
from .system import System

__all__ = ["load_system"]

_RUNNABLE = "a Service, a System, a list of services, or a function returning one of those"


def load_system(
    target: str, *, transport: str, grace: float, instance: str | None = None
) -> System:
    """Import ``module:attr`` and make a :class:`System` of it (named ``instance`` if given)."""
    module_name, _, attr = target.partition(":")
    if not module_name or not attr:
        raise ConfigurationError(f"expected MODULE:ATTR (e.g. 'shop.app:system'), got {target!r}")
    module = _import(module_name)
    obj = _made(_attribute(module, attr), target, module)
    if isinstance(obj, System):
        return obj
    if isinstance(obj, Service):
        obj = [obj]
    if isinstance(obj, Sequence) and obj and all(isinstance(s, Service) for s in obj):
        return System(*obj, transport=transport, grace=grace, instance=instance)
    raise ConfigurationError(
        f"{target} gave a {type(obj).__name__}; expected {_RUNNABLE}{_offer(module)}"
    )


def _import(name: str) -> ModuleType:
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name is not None and (name == exc.name or name.startswith(f"{exc.name}.")):
            raise ConfigurationError(
                f"cannot import module {name!r}: no module {exc.name!r} on the Python path "
                "(which starts with the current directory); check the spelling, or run from "
                f"the directory that holds {exc.name.replace('.', '/')}.py"
            ) from None
        raise ConfigurationError(
            f"cannot import module {name!r}: {exc}; install it, or fix that import"
        ) from exc
    except ImportError as exc:
        raise ConfigurationError(f"cannot import module {name!r}: {exc}") from exc
    except SyntaxError as exc:
        raise ConfigurationError(
            f"cannot import module {name!r}: {exc.msg} ({exc.filename}, line {exc.lineno})"
        ) from None


def _attribute(module: ModuleType, attr: str) -> Any:
    try:
        return getattr(module, attr)
    except AttributeError:
        raise ConfigurationError(
            f"module {module.__name__!r} has no attribute {attr!r}{_offer(module)}"
        ) from None


def _made(obj: Any, target: str, module: ModuleType) -> Any:
    """``obj``, or what it returns when it is a function (called with no arguments)."""
    if isinstance(obj, type):
        raise ConfigurationError(
            f"{target} is {_class_kind(obj)}, not something to run; a target names "
            f"{_RUNNABLE}{_offer(module)}"
        )
    if not callable(obj) or isinstance(obj, Service | System):
        return obj
    wanted = _required_parameters(obj)
    if wanted:
        raise ConfigurationError(
            f"{target} takes arguments ({', '.join(wanted)}), but a target function is called "
            "with none: give them defaults, or name a function that takes none"
        )
    return obj()


def _class_kind(cls: type) -> str:
    if issubclass(cls, Payload):
        return f"a {cls.kind.capitalize()} class (a message payload)"
    return f"the class {cls.__qualname__}"


def _required_parameters(function: Any) -> list[str]:
    try:
        parameters = inspect.signature(function).parameters.values()
    except (TypeError, ValueError):  # no signature to read: let the call say
        return []
    variadic = (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
    return [p.name for p in parameters if p.default is p.empty and p.kind not in variadic]


def _offer(module: ModuleType) -> str:
    """What the module has that would run, as targets, for the end of an error message."""
    found = [
        f"{module.__name__}:{name}"
        for name, value in vars(module).items()
        if not name.startswith("_") and isinstance(value, Service | System)
    ]
    if not found:
        return ""
    return f"; these would run: {', '.join(found)}"
