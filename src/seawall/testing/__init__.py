"""Test support shipped with seawall: the test system and the conformance suites.

The conformance suites are pytest test classes; importing this package asks
pytest to rewrite their asserts so failures show the compared values.
"""

from __future__ import annotations

import pytest

pytest.register_assert_rewrite(
    "seawall.testing._conformance",
    "seawall.testing._delivery",
    "seawall.testing._event_store",
    "seawall.testing._outbox",
)

from ._conformance import TransportConformance  # noqa: E402
from ._delivery import DeliveryConformance  # noqa: E402
from ._event_store import EventStoreConformance  # noqa: E402
from ._outbox import OutboxConformance  # noqa: E402
from ._system import HandlerFailure, RecordingTransport, TestSystem  # noqa: E402

__all__ = [
    "DeliveryConformance",
    "EventStoreConformance",
    "HandlerFailure",
    "OutboxConformance",
    "RecordingTransport",
    "TestSystem",
    "TransportConformance",
]
