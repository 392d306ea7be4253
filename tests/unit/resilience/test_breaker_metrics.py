"""Breaker states reach the Prometheus exposition through the health the probes read."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from seawall import Health
from seawall.discovery import BreakerState
from seawall.observability.exposition import render


def test_breaker_states_are_exported_as_gauges() -> None:
    health = Health(
        live=True,
        ready=True,
        breakers=(
            BreakerState(target="payments", state="open", failure_rate=0.75),
            BreakerState(target="stock", state="closed"),
        ),
    )
    text = render([], health).decode()
    families = {f.name: f for f in text_string_to_metric_families(text)}
    states = {
        (s.labels["target"], s.labels["state"]): s.value
        for s in families["seawall_circuit_breaker_state"].samples
    }
    assert states[("payments", "open")] == 1
    assert states[("payments", "closed")] == 0
    assert states[("stock", "closed")] == 1
    rates = {
        s.labels["target"]: s.value
        for s in families["seawall_circuit_breaker_failure_rate"].samples
    }
    assert rates == {"payments": 0.75, "stock": 0.0}
