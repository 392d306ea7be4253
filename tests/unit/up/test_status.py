"""The status table of ``seawall up``: rates from cumulative counters, one row per service."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from seawall._up.processes import Instance, InstanceReport
from seawall._up.status import Rates, handled_by_service, status_table


@pytest.mark.parametrize(
    ("looks", "expected"),
    [
        pytest.param([(10.0, {"a": 100})], {}, id="first look: no rate yet"),
        pytest.param([(10.0, {"a": 100}), (12.0, {"a": 150})], {"a": 25.0}, id="per second"),
        pytest.param(
            [(10.0, {"a": 100}), (12.0, {"a": 150}), (12.0, {"a": 170})],
            {"a": 25.0},
            id="same instant: rate kept",
        ),
        pytest.param([(10.0, {"a": 100}), (11.0, {"a": 40})], {"a": 0.0}, id="counter fell: zero"),
        pytest.param(
            [(10.0, {"a": 100}), (11.0, {"a": 140, "b": 7}), (13.0, {"a": 150, "b": 17})],
            {"a": 5.0, "b": 5.0},
            id="each service from its own first look",
        ),
    ],
)
def test_rates(looks: list[tuple[float, dict[str, int]]], expected: dict[str, float]) -> None:
    rates = Rates()
    for now, handled in looks:
        result = rates.update(now, handled)
    assert result == expected


def test_every_service_gets_a_row_of_its_own_instances() -> None:
    kitchen = Instance("kitchen", 1, state="running")
    kitchen.report = InstanceReport(pid=1, handled=5, dead_lettered=2)
    orders = [Instance("orders", 1, state="running"), Instance("orders", 2, state="failed")]
    orders[0].report = InstanceReport(pid=2, handled=1000)
    orders[1].earlier.update(handled=3, dead_lettered=1)
    orders[1].restarts = 4
    instances = [orders[0], kitchen, orders[1]]
    assert handled_by_service(instances) == {"orders": 1003, "kitchen": 5}

    console = Console(file=io.StringIO(), width=120)
    console.print(status_table(instances, {"orders": 12.4}, "up"))
    text = console.file.getvalue()  # type: ignore[attr-defined]
    rows = {
        cells[0]: cells[1:]
        for line in text.splitlines()
        if len(cells := [c.strip() for c in line.split("│")[1:-1]]) == 7
        and cells[0] in ("kitchen", "orders")
    }
    assert rows == {
        "orders": ["1/2", "running, failed", "4", "1,003", "12", "1"],
        "kitchen": ["1/1", "running", "0", "5", "0", "2"],
    }
