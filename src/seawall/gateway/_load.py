"""``MODULE:ATTR`` naming a :class:`~._gateway.Gateway`: what ``seawall gateway`` and a
``seawall up`` gateway unit run, with the system it sends through.

The attribute is a gateway, or a function (taking no arguments) returning one.
Its own ``system`` (services in the same process) is used when it has one;
otherwise a system without services, a client of ``transport``, carries its
requests (the gateway's process then holds only its reply inbox).
"""

from __future__ import annotations

from .._exceptions import ConfigurationError
from .._runtime.system import System
from .._runtime.target import _attribute, _import, _made
from ._gateway import Gateway

__all__ = ["load_gateway"]


def load_gateway(
    target: str, *, transport: str, grace: float = 10.0, instance: str | None = None
) -> tuple[Gateway, System]:
    """Import the gateway ``target`` names, and the system it sends through."""
    module_name, _, attr = target.partition(":")
    if not module_name or not attr:
        raise ConfigurationError(
            f"expected MODULE:ATTR naming a Gateway (e.g. 'shop.edge:gateway'), got {target!r}"
        )
    module = _import(module_name)
    gateway = _made(_attribute(module, attr), target, module)
    if not isinstance(gateway, Gateway):
        found = [n for n, v in vars(module).items() if isinstance(v, Gateway)]
        offer = f"; these are gateways: {', '.join(f'{module_name}:{n}' for n in found)}"
        raise ConfigurationError(
            f"{target} is a {type(gateway).__name__}, not a seawall.gateway.Gateway"
            f"{offer if found else ''}"
        )
    system = gateway.system or System(transport=transport, grace=grace, instance=instance)
    return gateway, system
