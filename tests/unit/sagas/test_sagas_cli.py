"""``seawall sagas status`` on a real SQLite saga store: counts, stuck sagas, JSON."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import ClassVar

import msgspec
from click.testing import CliRunner, Result

from seawall import Command, Message, VirtualClock, uuid7
from seawall._cli import main
from seawall.es import SQLiteEventStore
from seawall.sagas import CommandSent, Saga, SagaLog, SagaMachine, Step, status


class Go(Command, frozen=True):
    type_name: ClassVar[str] = "cli.Go"


class Back(Command, frozen=True):
    type_name: ClassVar[str] = "cli.Back"


class Trip(msgspec.Struct, frozen=True):
    id: str


SAGA = Saga(
    "trip",
    Trip,
    steps=[Step("go", to="there", send=lambda t: Go(), compensate=lambda t, why: Back())],
)


def invoke(*args: str) -> Result:
    """``seawall sagas status ARGS`` (it runs its own event loop: call it off the test's)."""
    return CliRunner().invoke(main, ["sagas", "status", *args])


async def _fill(path: Path) -> None:
    """A completed saga, one under way now, and one under way for an hour (stuck)."""
    machine = SagaMachine(SAGA, source="cli", replies="cli.saga-replies")
    for id, started in (("done", time.time()), ("fresh", time.time()), ("old", time.time() - 3600)):
        clock = VirtualClock(start=started)
        store = await SQLiteEventStore.open(path, clock=clock)
        log = SagaLog(store)
        state, events = machine.start(id, Trip(id=id), clock.time())
        await log.append(state, events)
        if id == "done":
            sent = next(e for e in events if isinstance(e, CommandSent))
            reply = Message(
                id=uuid7(), type="seawall.Done", source="x", causationid=sent.message_id
            )
            await log.append(state, machine.on_reply(state, reply, clock.time()))
        await store.close()


async def test_status_function_and_command_agree(tmp_path: Path) -> None:
    path = tmp_path / "sagas.db"
    await _fill(path)
    store = await SQLiteEventStore.open(path)
    views = {v.id: v for v in await status(store)}
    await store.close()
    assert {i: v.state for i, v in views.items()} == {
        "done": "completed",
        "fresh": "running",
        "old": "stuck",
    }
    assert views["old"].step == "go"

    out = await asyncio.to_thread(invoke, "--store", f"sqlite://{path}", "--json")
    assert out.exit_code == 0, out.output
    body = json.loads(out.output)
    assert body["counts"] == {
        "running": 1,
        "compensating": 0,
        "stuck": 1,
        "completed": 1,
        "rejected": 0,
    }
    assert sorted(s["id"] for s in body["sagas"]) == ["fresh", "old"]  # unfinished only
    text = await asyncio.to_thread(invoke, "--store", f"sqlite://{path}", "--all")
    assert text.exit_code == 0, text.output
    assert "stuck" in text.output
    assert "done" in text.output


def test_a_missing_store_is_a_clear_error(tmp_path: Path) -> None:
    missing = tmp_path / "nope.db"
    out = invoke("--store", f"sqlite://{missing}")
    assert out.exit_code == 1
    assert "no saga store at" in out.output
    assert not missing.exists()  # not created by looking
