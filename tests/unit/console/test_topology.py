"""The topology drawn from registry heartbeats: who runs, what they send and handle, expiry."""

from __future__ import annotations

from seawall.console import Topology
from seawall.console.topology import draw
from seawall.discovery import EXPIRY, Announcement, BreakerState, Handles


def beat(service: str, instance: str, **fields: object) -> Announcement:
    return Announcement(service=service, instance=instance, **fields)  # type: ignore[arg-type]


def test_services_channels_and_arrows_come_from_what_instances_say() -> None:
    topology = Topology()
    orders = Handles(channel="orders", group="orders", types=("CreateOrder@1",))
    kitchen = Handles(channel="kitchen", group="kitchen")
    topology.hear(beat("orders", "o-1", handles=(orders,), sends_to=("kitchen",)), 0.0)
    topology.hear(beat("kitchen", "k-1", handles=(kitchen,), handled_per_s=4.0), 0.0)
    topology.hear(
        beat(
            "kitchen",
            "k-2",
            handles=(kitchen,),
            handled_per_s=6.0,
            handler_p99_ms=12.5,
            restarts=1,
            healthy=False,
            breakers=(BreakerState(target="accounting", state="open"),),
        ),
        0.0,
    )
    state = topology.snapshot(1.0)
    assert [s["name"] for s in state["services"]] == ["kitchen", "orders"]
    kitchen_row = state["services"][0]
    assert len(kitchen_row["instances"]) == 2
    assert kitchen_row["rate"] == 10.0
    assert kitchen_row["p99_ms"] == 12.5
    assert kitchen_row["restarts"] == 1
    assert kitchen_row["healthy"] is False
    assert kitchen_row["breakers"] == [
        {"target": "accounting", "state": "open", "failure_rate": 0.0}
    ]
    channels = {c["name"]: c for c in state["channels"]}
    assert channels["kitchen"]["senders"] == ["orders"]
    assert channels["kitchen"]["groups"] == {"kitchen": ["kitchen"]}
    assert {(a["from"], a["to"], a["kind"]) for a in state["arrows"]} == {
        ("orders", "kitchen", "sends"),
        ("kitchen", "kitchen", "handles"),
        ("orders", "orders", "handles"),
    }
    assert state["groups"] == ["kitchen", "orders"]


def test_an_instance_is_forgotten_after_the_expiry_or_at_once_when_leaving() -> None:
    topology = Topology()
    topology.hear(beat("a", "a-1"), 0.0)
    topology.hear(beat("b", "b-1"), 0.0)
    topology.hear(beat("b", "b-1"), EXPIRY)  # b beats again; a does not
    assert [a.instance for a in topology.live(EXPIRY + 0.1)] == ["b-1"]
    topology.hear(beat("b", "b-1", leaving=True), EXPIRY + 0.2)
    assert topology.live(EXPIRY + 0.2) == []


def test_restarts_a_supervisor_outside_counted_are_added_by_pid() -> None:
    live = [beat("kitchen", "k-1", pid=101), beat("kitchen", "k-2", pid=102, restarts=1)]
    [kitchen] = draw(live, {101: 2, 999: 5})["services"]
    assert kitchen["restarts"] == 3  # 2 by seawall up for pid 101, 1 inside k-2
