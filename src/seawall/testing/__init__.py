"""Test support shipped with seawall: the test system and the conformance suites.

It needs pytest and pytest-asyncio: ``pip install 'seawall[testing]'``, which
also brings seawall's pytest plugin to life (fixtures, and async tests that use
seawall run on asyncio with no configuration; see :mod:`seawall.testing._plugin`).
The conformance suites are pytest test classes; importing this package asks
pytest to rewrite their asserts so failures show the compared values.
"""

from __future__ import annotations

try:
    import pytest
    import pytest_asyncio  # noqa: F401  (the suites' fixtures need it)
except ImportError as exc:  # pragma: no cover - depends on what is installed
    raise ImportError(
        f"seawall.testing needs pytest and pytest-asyncio ({exc}): pip install 'seawall[testing]'"
    ) from exc

pytest.register_assert_rewrite(
    "seawall.testing._conformance",
    "seawall.testing._crash",
    "seawall.testing._delivery",
    "seawall.testing._event_store",
    "seawall.testing._outbox",
)

from ._conformance import TransportConformance  # noqa: E402
from ._crash import CrashConformance  # noqa: E402
from ._delivery import DeliveryConformance  # noqa: E402
from ._event_store import EventStoreConformance  # noqa: E402
from ._outbox import OutboxConformance  # noqa: E402
from ._plugin import StartTestSystem  # noqa: E402
from ._system import HandlerFailure, RecordingTransport, TestSystem  # noqa: E402

__all__ = [
    "CrashConformance",
    "DeliveryConformance",
    "EventStoreConformance",
    "HandlerFailure",
    "OutboxConformance",
    "RecordingTransport",
    "StartTestSystem",
    "TestSystem",
    "TransportConformance",
]
