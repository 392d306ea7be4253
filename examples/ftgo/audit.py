"""The auditor: what a run did, and whether the system kept its promises.

:class:`Facts` reads what the services recorded in their own SQLite files
(only after the run; no service reads another's file). :class:`Summary`
holds what the client saw (outcomes, latencies, errors) and what the
supervisor counted, and :meth:`Summary.problems` checks the invariants:

* every order reached a final state, and the outcome the client was given is
  the one the Order service recorded (nothing acknowledged was lost);
* every approved order has exactly one ticket (approved), one card
  authorization (standing), and exactly one courier (the one Delivery chose);
* no rejected order keeps an active ticket or a standing authorization, and no
  order was both charged and rejected for a declined card;
* every order's saga (in the Order service's saga store) ended, completed for an
  approved order and rejected for a rejected one, and compensated its steps in
  the reverse order of the steps it had done;
* the malformed message was dead-lettered, and nothing else was.
"""

from __future__ import annotations

import json
import sqlite3
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from seawall import Message

from .messages import OrderOutcome

__all__ = ["Facts", "Summary"]


def _rows(path: Path, sql: str) -> list[tuple[Any, ...]]:
    if not path.exists():
        return []
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return list(db.execute(sql).fetchall())
    finally:
        db.close()


@dataclass
class SagaFacts:
    """One create-order saga, from its events."""

    status: str = "running"
    done: list[str] = field(default_factory=list)
    """Forward steps done (or given up without an answer), in order."""
    compensated: list[str] = field(default_factory=list)
    """Steps compensated, in the order it happened."""
    retries: int = 0
    """Commands sent again after a step timed out or failed."""

    def compensated_in_reverse(self, compensable: set[str]) -> bool:
        if self.status != "rejected":
            return not self.compensated
        undo = [step for step in reversed(self.done) if step in compensable]
        return self.compensated == undo


def read_sagas(path: Path) -> dict[str, SagaFacts]:
    """Every saga in the Order service's saga store (an event store file), by order id."""
    sagas: defaultdict[str, SagaFacts] = defaultdict(SagaFacts)
    sql = "SELECT stream, type, data FROM events WHERE stream LIKE 'saga:%' ORDER BY position"
    for stream, type_, data in _rows(path, sql):
        saga, event = sagas[stream.split(":", 2)[2]], json.loads(data)
        kind = type_.removeprefix("seawall.saga.")
        if kind == "CommandSent" and event["attempt"] > 1:
            saga.retries += 1
        elif kind == "StepDone" or (kind == "StepFailed" and event["compensate"]):
            saga.done.append(event["name"])
        elif kind == "StepCompensated":
            saga.compensated.append(event["name"])
        elif kind in ("Completed", "Rejected"):
            saga.status = kind.lower()
    return dict(sagas)


COMPENSABLE = {"create order", "create ticket", "authorize card"}
"""The create-order saga's steps that have a compensation."""


@dataclass
class Facts:
    """The services' own records, by order id."""

    orders: dict[str, tuple[str, str]] = field(default_factory=dict)
    """Order service: order id -> (state, reason)."""
    tickets: dict[str, str] = field(default_factory=dict)
    """Kitchen: order id -> ticket state."""
    tickets_by_pid: Counter[int] = field(default_factory=Counter)
    authorizations: dict[str, str] = field(default_factory=dict)
    """Accounting: order id -> authorized, declined or reversed."""
    sagas: dict[str, SagaFacts] = field(default_factory=dict)
    """Order's saga store: order id -> how its create-order saga went."""
    assignments: dict[str, str] = field(default_factory=dict)
    """Delivery: order id -> chosen courier."""
    jobs: dict[str, list[str]] = field(default_factory=dict)
    """Couriers: order id -> couriers that took it."""
    step_retries: int = 0
    menu_versions: dict[str, int] = field(default_factory=dict)
    """Order's replica: restaurant -> menu version."""

    @classmethod
    def read(cls, folder: Path) -> Facts:
        facts = cls(jobs=cls.read_jobs(folder))
        order = folder / "order.db"
        for oid, state, reason in _rows(order, "SELECT order_id, state, reason FROM orders"):
            facts.orders[oid] = (state, reason)
        facts.sagas = read_sagas(folder / "order-sagas.db")
        facts.step_retries = sum(s.retries for s in facts.sagas.values())
        facts.menu_versions = dict(_rows(order, "SELECT restaurant_id, version FROM menus"))
        kitchen = folder / "kitchen.db"
        for oid, state, pid in _rows(kitchen, "SELECT order_id, state, created_by FROM tickets"):
            facts.tickets[oid] = state
            facts.tickets_by_pid[pid] += 1
        sql = "SELECT order_id, state FROM authorizations"
        facts.authorizations = dict(_rows(folder / "accounting.db", sql))
        sql = "SELECT order_id, courier FROM assignments"
        facts.assignments = dict(_rows(folder / "delivery.db", sql))
        return facts

    @staticmethod
    def read_jobs(folder: Path) -> dict[str, list[str]]:
        jobs: defaultdict[str, list[str]] = defaultdict(list)
        for db in sorted(folder.glob("courier-*.db")):
            for oid, courier in _rows(db, "SELECT order_id, courier FROM jobs"):
                jobs[oid].append(courier)
        return dict(jobs)


@dataclass
class Summary:
    """What a run did; filled in as it goes, audited at the end."""

    orders: int
    transport: str
    prefix: str = ""
    outcomes: dict[str, OrderOutcome] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)
    seconds: float = 0.0
    dead_letters: list[Message] = field(default_factory=list)
    killed: list[str] = field(default_factory=list)
    restarts: dict[str, int] = field(default_factory=dict)
    rolling: bool = True
    """Whether the run restarts every service rolling while the orders flow."""
    rolled: str = ""
    """What the rolling restart of every service said it did."""
    roll_error: str = ""
    roll_seconds: float = 0.0
    handled: int = 0
    retried: int = 0
    dead_lettered: int = 0
    scraped: dict[str, int] = field(default_factory=dict)
    """``seawall_messages_total`` by outcome, as scraped from ``/metrics`` at the end."""
    facts: Facts = field(default_factory=Facts)

    def by_state(self, state: str) -> set[str]:
        return {oid for oid, outcome in self.outcomes.items() if outcome.state == state}

    def latency(self, quantile: float) -> float:
        """Order latency at ``quantile`` (nearest rank), seconds."""
        ordered = sorted(self.latencies) or [0.0]
        return ordered[min(len(ordered) - 1, int(quantile * len(ordered)))]

    @property
    def orders_per_second(self) -> float:
        return len(self.outcomes) / max(self.seconds, 1e-9)

    def saga_problems(self) -> list[str]:
        """Sagas that did not end as their order did, or compensated out of order."""
        facts, found = self.facts, []
        expected = {"approved": "completed", "rejected": "rejected"}
        mismatched = sorted(
            oid
            for oid, (state, reason) in facts.orders.items()
            if reason != "item not on the menu"  # rejected before any saga started
            and facts.sagas.get(oid, SagaFacts()).status != expected.get(state)
        )
        if mismatched:
            found.append(f"{len(mismatched)} sagas did not end as their order: {mismatched[:5]}")
        disorder = sorted(
            oid for oid, saga in facts.sagas.items() if not saga.compensated_in_reverse(COMPENSABLE)
        )
        if disorder:
            found.append(f"{len(disorder)} sagas compensated out of order: {disorder[:5]}")
        return found

    def problems(self) -> list[str]:
        """Broken invariants, in words; empty when every promise was kept."""
        facts, found = self.facts, []
        reported = {"handled": self.handled, "retried": self.retried}
        reported["dead_lettered"] = self.dead_lettered
        if any(self.scraped.get(outcome) != count for outcome, count in reported.items()):
            found.append(f"/metrics says {self.scraped}, the services reported {reported}")
        if self.errors or len(self.outcomes) != self.orders:
            found.append(
                f"{self.orders - len(self.outcomes)} orders got no outcome: {self.errors[:3]}"
            )
        unfinished = sorted(o for o, (state, _) in facts.orders.items() if state == "pending")
        if unfinished or len(facts.orders) != self.orders:
            found.append(
                f"{len(facts.orders)} orders recorded for {self.orders} placed; "
                f"not final: {unfinished[:5]}"
            )
        lost = sorted(
            oid
            for oid, out in self.outcomes.items()
            if facts.orders.get(oid, ("", ""))[0] != out.state
        )
        if lost:
            found.append(
                f"{len(lost)} outcomes told to the client differ from the record: {lost[:5]}"
            )
        approved = self.by_state("approved")
        bad = sorted(
            oid
            for oid in approved
            if facts.tickets.get(oid) != "approved" or facts.authorizations.get(oid) != "authorized"
        )
        if bad:
            found.append(
                f"{len(bad)} approved orders without an approved ticket and card: {bad[:5]}"
            )
        couriers = sorted(
            oid
            for oid in approved | facts.jobs.keys()
            if facts.jobs.get(oid, []) != ([facts.assignments.get(oid)] if oid in approved else [])
        )
        if couriers:
            found.append(
                f"{len(couriers)} orders without exactly the one courier Delivery chose "
                f"(approved) or with one (rejected): {couriers[:5]}"
            )
        rejected = {o for o, (state, _) in facts.orders.items() if state == "rejected"}
        active = sorted(
            oid
            for oid in rejected | self.by_state("rejected")
            if facts.tickets.get(oid) in ("pending", "approved")
            or facts.authorizations.get(oid) == "authorized"
        )
        if active:
            found.append(
                f"{len(active)} rejected orders keep a ticket or an authorization: {active[:5]}"
            )
        found += self.saga_problems()
        charged = sorted(
            oid
            for oid, out in self.outcomes.items()
            if out.reason == "card declined" and facts.authorizations.get(oid) != "declined"
        )
        if charged:
            found.append(
                f"{len(charged)} orders rejected for a card that was approved: {charged[:5]}"
            )
        reasons = [m.headers.get("seawall-dlq-reason") for m in self.dead_letters]
        if reasons != ["decode-error"] or self.dead_lettered != 1:
            found.append(
                f"expected the one malformed message dead-lettered; got {reasons} "
                f"({self.dead_lettered} dead letters counted by the services)"
            )
        if self.killed and not any(self.restarts.values()):
            found.append(f"killed {self.killed} but nothing was restarted")
        if self.rolling and (self.roll_error or not self.rolled):
            found.append(f"the rolling restart of every service failed: {self.roll_error}")
        return found
