"""The summary a demo run prints: outcomes, speed, faults, interaction styles, invariants."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from .audit import Summary


def report(summary: Summary, console: Console) -> None:
    console.print(outcomes_table(summary))
    console.print(styles_table(summary))
    problems = summary.problems()
    for problem in problems:
        console.print(f"[bold red]FAILED[/]: {problem}")
    if not problems:
        console.print(
            "[bold green]ok[/]: every order final; each approved order has one ticket, one "
            "authorization, one courier; no rejected order keeps a ticket or an authorization; "
            "every saga ended as its order, compensating in reverse; nothing lost"
        )


def outcomes_table(summary: Summary) -> Table:
    table = Table(title=f"FTGO on {summary.transport}", show_header=False, title_justify="left")
    rejected = summary.by_state("rejected")
    reasons: dict[str, int] = {}
    for oid in rejected:
        reason = summary.outcomes[oid].reason
        reasons[reason] = reasons.get(reason, 0) + 1
    table.add_row(
        "orders approved / rejected",
        f"{len(summary.by_state('approved')):,} / {len(rejected):,}"
        + (f"  ({', '.join(f'{n} {r}' for r, n in sorted(reasons.items()))})" if reasons else ""),
    )
    table.add_row(
        "order latency p50 / p99",
        f"{summary.latency(0.5) * 1e3:.0f} / {summary.latency(0.99) * 1e3:.0f} ms",
    )
    table.add_row(
        "throughput",
        f"{summary.orders_per_second:,.0f} orders/s, "
        f"{summary.handled / max(summary.seconds, 1e-9):,.0f} msgs/s handled "
        f"({summary.handled:,} in {summary.seconds:.1f} s)",
    )
    sagas = summary.facts.sagas.values()
    table.add_row(
        "sagas completed / rejected",
        f"{sum(s.status == 'completed' for s in sagas):,} / "
        f"{sum(s.status == 'rejected' for s in sagas):,}  "
        f"({sum(len(s.compensated) for s in sagas):,} compensations)",
    )
    table.add_row(
        "retries",
        f"{summary.retried} redeliveries by the dispatchers, "
        f"{summary.facts.step_retries} saga steps asked again",
    )
    table.add_row(
        "dead letters",
        ", ".join(f"{m.type} ({m.headers.get('seawall-dlq-reason')})" for m in summary.dead_letters)
        or "none",
    )
    restarted = {name: n for name, n in summary.restarts.items() if n}
    table.add_row(
        "faults -> restarts",
        f"SIGKILL {', '.join(summary.killed) or 'nothing'} -> restarted "
        f"{', '.join(f'{k} x{n}' for k, n in restarted.items()) or 'nothing'}",
    )
    table.add_row(
        "rolling restart",
        f"{summary.rolled or summary.roll_error or 'not done'} "
        f"in {summary.roll_seconds:.1f} s, while the orders flowed",
    )
    table.add_row("failed requests", str(len(summary.errors)))
    return table


def styles_table(summary: Summary) -> Table:
    facts = summary.facts
    table = Table(
        "interaction style", "where", "count", title="interaction styles", title_justify="left"
    )
    table.add_row(
        "async request/response",
        "Order's saga -> Consumer, Kitchen, Accounting, Order (commands from the saga log "
        "through its relay; replies on the durable order.saga-replies channel)",
        f"{len(facts.sagas):,} sagas, {len(facts.tickets):,} tickets",
    )
    table.add_row(
        "request/response",
        "client -> Order (answered when the order's saga ends)",
        f"{len(facts.orders):,}",
    )
    table.add_row(
        "publish/subscribe",
        "Restaurant -> Order (menu replica); Order -> Delivery",
        f"menus {facts.menu_versions}",
    )
    table.add_row(
        "publish/async responses",
        "Delivery -> couriers: offers, best within 0.5 s",
        f"{len(facts.assignments):,}",
    )
    table.add_row(
        "one-way notification",
        "Delivery -> chosen courier: AssignCourier",
        f"{sum(map(len, facts.jobs.values())):,}",
    )
    return table
