"""The live status table of ``seawall up``: one row per service.

Part of the edges layer. :class:`Rates` turns the cumulative ``handled``
counters the instances report into messages per second between two looks;
:func:`status_table` draws the rows with rich (service, instances running of
wanted, state, restarts, handled, msgs/s, dead letters); :func:`status_lines`
says the same in plain lines, one per service, for output that is not a terminal.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from rich.table import Table

from .processes import Instance, State

__all__ = ["Rates", "Row", "rows", "status_lines", "status_table"]

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


@dataclass(frozen=True)
class Row:
    """One service, summed over its instances."""

    service: str
    running: int
    wanted: int
    states: list[State]
    restarts: int
    handled: int
    rate: float
    dead: int


def rows(instances: list[Instance], rates: dict[str, float]) -> list[Row]:
    """One row per service, in the order of the file."""
    by_service: defaultdict[str, list[Instance]] = defaultdict(list)
    for instance in instances:
        by_service[instance.service].append(instance)
    return [
        Row(
            service=service,
            running=sum(1 for i in group if i.state == "running"),
            wanted=len(group),
            states=sorted({i.state for i in group}, key=list(_STATE_STYLE).index),
            restarts=sum(i.restarts for i in group),
            handled=sum(i.total("handled") for i in group),
            rate=rates.get(service, 0.0),
            dead=sum(i.total("dead_lettered") for i in group),
        )
        for service, group in by_service.items()
    ]


def status_table(instances: list[Instance], rates: dict[str, float], title: str) -> Table:
    """One row per service, summed over its instances."""
    table = Table(title=title, title_justify="left")
    for column in ("service", "instances", "state", "restarts", "handled", "msgs/s", "dead"):
        table.add_column(column, justify="left" if column in ("service", "state") else "right")
    for row in rows(instances, rates):
        table.add_row(
            row.service,
            f"{row.running}/{row.wanted}",
            ", ".join(f"[{_STATE_STYLE[s]}]{s}[/]" for s in row.states),
            str(row.restarts),
            f"{row.handled:,}",
            f"{row.rate:,.0f}",
            str(row.dead),
        )
    return table


def status_lines(instances: list[Instance], rates: dict[str, float], elapsed: float) -> list[str]:
    """The table as plain lines, one per service, for output that is not a terminal."""
    return [
        f"seawall up: {elapsed:.1f} s: {row.service} {row.running}/{row.wanted} "
        f"{', '.join(row.states)}, {row.restarts} restarts, {row.handled:,} handled, "
        f"{row.rate:,.0f} msgs/s, {row.dead} dead"
        for row in rows(instances, rates)
    ]
