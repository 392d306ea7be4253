"""The Order process killed with SIGKILL at every step boundary of its create-order saga.

A real FTGO run (``seawall up``: broker and nine service processes) with
``FTGO_CRASH_AT`` naming every boundary of the saga: the Order process kills
itself right after storing the event that ends each one (the saga started, a
command stored but not yet published, a step done or failed, compensating, a
compensation stored or done, the saga ended), once per boundary, and the
supervisor starts it again. A quarter of the cards are declined, so the
compensating path is crossed too. Afterwards every order is approved or
rejected, no rejected order keeps a ticket or an authorization, every saga
ended as its order did, and each rejected saga compensated the steps it had
done in reverse order: the audit of the demo checks all of it.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from examples.ftgo.audit import COMPENSABLE
from examples.ftgo.demo import run

from seawall import RestartIntensity

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(300)]

FORWARD = ["verify consumer", "create ticket", "authorize card", "approve ticket", "approve order"]
BOUNDARIES = [
    "started",
    *(f"sent:{step}" for step in FORWARD),
    *(f"done:{step}" for step in FORWARD),
    "failed:verify consumer",  # a blocked consumer
    "failed:authorize card",  # a declined card
    "compensating",
    "sent compensation:create ticket",
    "compensated:create ticket",
    "sent compensation:create order",
    "compensated:create order",
    "completed",
    "rejected",
]
ORDERS = 60


async def test_order_killed_at_every_saga_step_boundary_ends_every_order(tmp_path: Path) -> None:
    summary = await run(
        ORDERS,
        concurrency=6,
        state=tmp_path,
        env={
            "FTGO_CRASH_AT": ",".join(BOUNDARIES),
            "FTGO_DECLINE_PERCENT": "25",
            # several chances for each rare boundary: a boundary stored in the same group
            # commit as a kill is durable, but the process is gone before it could stop there
            "FTGO_BLOCKED": "c-27,c-41",
        },
        # the Order process crashes 20 times in a row: restarting it within 50 ms (not the
        # 0.5 s the doubling backoff reaches) takes ~8 s off the run; what each life
        # crosses is the same, the next order redelivered to it as soon as it is back
        intensity=RestartIntensity(
            max_restarts=100, within=60.0, initial_backoff=0.02, max_backoff=0.05
        ),
        order_timeout=180.0,  # an order may wait through several restarts of its Order
    )
    crashed = sorted(p.name for p in (tmp_path / "ftgo" / "crashes").iterdir())
    assert crashed == sorted(BOUNDARIES)  # each boundary was reached, and killed the process
    assert summary.restarts["order-1"] == len(BOUNDARIES)
    assert summary.problems() == []  # approved or rejected; nothing kept; sagas in order
    facts = summary.facts
    assert {state for state, _ in facts.orders.values()} == {"approved", "rejected"}
    assert len(facts.orders) == ORDERS
    declined = [s for s in facts.sagas.values() if "authorize card" not in s.done]
    assert any(s.compensated == ["create ticket", "create order"] for s in declined)
    for saga in facts.sagas.values():
        undo = [step for step in reversed(saga.done) if step in COMPENSABLE]
        assert saga.compensated == (undo if saga.status == "rejected" else [])
