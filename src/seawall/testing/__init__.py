"""Test support shipped with seawall: the test system and the conformance suites."""

from __future__ import annotations

from ._delivery import DeliveryConformance
from ._system import HandlerFailure, RecordingTransport, TestSystem

__all__ = ["DeliveryConformance", "HandlerFailure", "RecordingTransport", "TestSystem"]
