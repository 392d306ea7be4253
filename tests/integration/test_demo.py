"""The one-process shop example (``python -m examples.shop``) keeps its promises on a short run."""

from __future__ import annotations

import io

from examples.shop import main, order, outages
from rich.console import Console

ORDERS = 30


async def test_short_demo_run_keeps_every_invariant() -> None:
    output = io.StringIO()
    summary = await main(ORDERS, concurrency=8, console=Console(file=output, width=100))

    assert summary.problems() == []
    declined = {order(n).order_id for n in range(ORDERS) if n % 10 == 7}
    assert summary.declined == declined
    assert len(summary.approved) == ORDERS - len(declined)
    assert summary.errors == []
    # every approved order reached exactly one courier, and analytics saw each once
    assert {oid: len(c) for oid, c in summary.books.deliveries.items()} == dict.fromkeys(
        summary.approved, 1
    )
    assert summary.books.revenue.keys() == summary.approved
    # the flaky warehouse was retried once per dropped link, and never gave up
    warehouse = summary.stats["warehouse:warehouse/warehouse"]
    assert warehouse.retried == sum(outages(order(n).order_id) for n in range(ORDERS))
    assert warehouse.dead_lettered == 0
    # both poison messages, and nothing else, were read back from payments.dlq
    reasons = sorted(m.headers["seawall-dlq-reason"] for m in summary.dead_letters)
    assert reasons == ["decode-error", "unknown-type"]
    assert {m.headers["seawall-dlq-channel"] for m in summary.dead_letters} == {"payments"}
    assert summary.stats["payments:payments/payments"].dead_lettered == 2
    assert len(summary.latencies) == ORDERS
    assert "every order final" in output.getvalue()
