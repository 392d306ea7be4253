"""The operator's console: dead letters to read and redrive, and a live page of the system.

Part of the edges layer, above the runtime and observability, below the CLI
(``seawall dlq``, ``seawall console``, ``seawall up --console``).
:mod:`.deadletters` lists, reads, redrives and purges dead letters on any
transport; :mod:`.topology` draws the running system from the registry's
heartbeats; :mod:`.web` serves both as a page (Starlette, a hand-written page
shipped in the package, live over server-sent events).
"""

from __future__ import annotations

from .deadletters import OPERATOR_GROUP, DeadLetter, DeadLetterView, Filter
from .topology import RegistryWatch, Topology

__all__ = ["OPERATOR_GROUP", "DeadLetter", "DeadLetterView", "Filter", "RegistryWatch", "Topology"]
