"""Targets for the gateway's command-line tests: a gateway with its own system, and one without.

``gateway`` runs the shop's services in its own process (``seawall gateway``
alone); ``edge`` has no system, so it sends through whatever transport it is
given (a ``seawall up`` gateway unit beside a ``calc`` unit in other processes).
"""

from __future__ import annotations

from tests.unit.gateway.shop import Add, Sum, World, make_system, routes, services

from seawall import Service
from seawall.gateway import Gateway

gateway = routes(Gateway(title="served shop", system=make_system(World())))

edge = Gateway(title="edge")
edge.request("GET", "/add/{a}", channel="calc", payload=Add, returns=Sum)


def calc() -> Service:
    return next(s for s in services(World()) if s.name == "calc")
