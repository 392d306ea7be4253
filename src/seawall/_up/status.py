"""The live status table of ``seawall up``: one row per service.

Part of the edges layer. :class:`Rates` turns the cumulative ``handled``
counters the instances report into messages per second between two looks;
:func:`status_table` draws the rows with rich (service, instances running of
wanted, state, restarts, handled, msgs/s, dead letters).
"""

from __future__ import annotations

from collections import defaultdict

from rich.table import Table

from .processes import Instance

__all__ = ["Rates", "status_table"]

_STATE_STYLE = {
    "running": "green",
    "starting": "yellow",
    "restarting": "bold yellow",
    "stopping": "cyan",
    "stopped": "dim",
    "failed": "bold red",
}


class Rates:
    """Handled messages per second per service, from cumulative counters and timestamps."""

    def __init__(self) -> None:
        self._last: dict[str, tuple[float, int]] = {}
        self.rates: dict[str, float] = {}

    def update(self, now: float, handled: dict[str, int]) -> dict[str, float]:
        for service, count in handled.items():
            then, before = self._last.get(service, (now, count))
            if now > then:
                self.rates[service] = max(0, count - before) / (now - then)
            self._last[service] = (now, count)
        return self.rates


def handled_by_service(instances: list[Instance]) -> dict[str, int]:
    totals: defaultdict[str, int] = defaultdict(int)
    for instance in instances:
        totals[instance.service] += instance.total("handled")
    return dict(totals)


def status_table(instances: list[Instance], rates: dict[str, float], title: str) -> Table:
    """One row per service, summed over its instances."""
    table = Table(title=title, title_justify="left")
    for column in ("service", "instances", "state", "restarts", "handled", "msgs/s", "dead"):
        table.add_column(column, justify="left" if column in ("service", "state") else "right")
    by_service: defaultdict[str, list[Instance]] = defaultdict(list)
    for instance in instances:
        by_service[instance.service].append(instance)
    for service, group in by_service.items():
        running = sum(1 for i in group if i.state == "running")
        states = sorted({i.state for i in group}, key=list(_STATE_STYLE).index)
        state = ", ".join(f"[{_STATE_STYLE[s]}]{s}[/]" for s in states)
        table.add_row(
            service,
            f"{running}/{len(group)}",
            state,
            str(sum(i.restarts for i in group)),
            f"{sum(i.total('handled') for i in group):,}",
            f"{rates.get(service, 0.0):,.0f}",
            str(sum(i.total("dead_lettered") for i in group)),
        )
    return table
