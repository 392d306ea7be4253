"""Names a package exports but loads on first use (PEP 562).

A package lists, for each such name, the module that defines it (relative to the
package), and sets its module-level ``__getattr__`` and ``__dir__`` from here. The first
lookup imports the module and keeps the value in the package's namespace, so every
later lookup is a plain global. Names that only the type checker needs are imported
under ``if TYPE_CHECKING:`` beside the table.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from importlib import import_module
from typing import Any

__all__ = ["exported", "loader"]


def loader(
    package: str, names: Mapping[str, str], namespace: dict[str, Any]
) -> Callable[[str], Any]:
    """A ``__getattr__`` for ``package`` that loads each of ``names`` from its module."""

    def load(name: str) -> Any:
        module = names.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = namespace[name] = getattr(import_module(module, package), name)
        return value

    return load


def exported(namespace: dict[str, Any], names: Iterable[str]) -> Callable[[], list[str]]:
    """A ``__dir__`` listing what is loaded and every exported name, loaded or not."""
    return lambda: sorted({*namespace, *names})
