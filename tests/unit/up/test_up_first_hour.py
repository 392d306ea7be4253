"""``seawall up`` in the first hour: real commands whose output is not a terminal.

It says where its broker is (a fixed ``listen`` address outside clients use), shows
a crashed child's last lines and plain status lines as it goes, stops at once on a
target that does not load, and a second Ctrl-C kills what the first was draining.
"""

from __future__ import annotations

import asyncio
import re
import signal
import time
import tomllib
from pathlib import Path

import pytest
from tests.apps.up_app import Ping, Pong, Slow
from tests.brokers import free_port
from tests.commands import Command

from seawall import ConfigurationError, System
from seawall._up.config import parse_up_config
from seawall._up.exits import EXIT_UNLOADABLE, describe_status, log_tail, quoted
from seawall._up.processes import Instance, InstanceReport
from seawall._up.status import status_lines


def _toml(tmp_path: Path, body: str, grace: float = 2.0) -> Path:
    path = tmp_path / "seawall.toml"
    path.write_text(f'state = "{tmp_path / "state"}"\ngrace = {grace}\n{body}')
    return path


def _gone(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


async def _use_from_outside(url: str) -> Pong:
    async with System(transport=url) as client:
        pong = await client.context().request("echo", Ping(n=1), returns=Pong, timeout=10)
        await client.context().send("echo", Slow(n=1, seconds=60))
    return pong


def test_outside_clients_reach_the_listen_address_and_a_second_ctrl_c_kills(
    tmp_path: Path,
) -> None:
    port, notes = free_port(), tmp_path / "notes.txt"
    body = f'listen = "127.0.0.1:{port}"\n[services.echo]\ntarget = "tests.apps.up_app:echo"\n'
    toml = _toml(tmp_path, body, grace=60.0)
    with Command("up", str(toml), "--status-every", "0.2", env={"UP_TEST_OUT": str(notes)}) as up:
        up.wait_for(rf"^seawall up: broker at seawall://127\.0\.0\.1:{port} for clients outside")
        up.wait_for(r"^seawall up: [\d.]+ s: echo 1/1 running")
        pong = asyncio.run(_use_from_outside(f"seawall://127.0.0.1:{port}"))
        children = up.remember_children()
        assert pong.pid in children  # answered by the service process seawall up started
        for _ in range(500):
            if notes.exists() and "start 1" in notes.read_text():
                break
            time.sleep(0.02)
        else:
            raise AssertionError("the slow handler never started")
        up.signal(signal.SIGINT)
        up.wait_for(r"^seawall up: stopping \(draining every service; Ctrl-C again kills them\)")
        time.sleep(0.5)
        assert up.proc.poll() is None  # draining a 60 s handler
        second = time.monotonic()
        up.signal(signal.SIGINT)
        assert up.wait(10) == 130, up.text()
        assert time.monotonic() - second < 5
    assert any(line.startswith("seawall up: a second Ctrl-C: killed") for line in up.err)
    for _ in range(250):
        if all(map(_gone, children)):
            break
        time.sleep(0.02)
    assert all(map(_gone, children)), "the broker and the service were killed with seawall up"


def test_a_target_that_does_not_load_stops_the_system_at_once_with_its_error(
    tmp_path: Path,
) -> None:
    body = (
        '[services.echo]\ntarget = "tests.apps.up_app:echo"\n'
        '[services.oops]\ntarget = "tests.apps.up_app:ecko"\n'
    )
    toml = _toml(tmp_path, body)
    with Command("up", str(toml), env={"UP_TEST_OUT": "/dev/null"}) as up:
        assert up.wait(30) == 1
    err = "\n".join(up.err)
    assert "Error: oops-1 cannot start: its target tests.apps.up_app:ecko does not load:" in err
    assert "| module 'tests.apps.up_app' has no attribute 'ecko'" in err
    assert f"fix target in [services.oops] of {toml}" in err
    assert "Traceback" not in err
    log = (tmp_path / "state" / "logs" / "oops-1.log").read_text()
    assert log.count("has no attribute 'ecko'") == 1  # started once, not restarted
    assert re.search(r"oops\s.*failed\s.*0 ", "\n".join(up.out))  # the table: failed, 0 restarts


def test_off_a_terminal_status_lines_come_as_it_runs_and_each_crash_with_its_last_lines(
    tmp_path: Path,
) -> None:
    body = (
        "[restart]\nmax_restarts = 100\ninitial_backoff = 0.2\nmax_backoff = 0.2\n"
        '[services.echo]\ntarget = "tests.apps.up_app:echo"\n'
        '[services.broken]\ntarget = "tests.apps.up_app:broken"\n'
    )
    toml = _toml(tmp_path, body)
    with Command("up", str(toml), "--status-every", "0.2", env={"UP_TEST_OUT": "/dev/null"}) as up:
        up.wait_for(r"^seawall up: broker at seawall\+unix://\S+, for this run only; listen = ")
        up.wait_for(
            r"^seawall up: broken-1 \(pid \d+\) exited with status 1; restart #1 in 0\.2 s; "
            r"its last lines \(.*broken-1\.log\):$"
        )
        up.wait_for(r"^    \| RuntimeError: this service cannot start \(on purpose")
        up.wait_for(r"exited with status 1; restart #2 in 0\.2 s; its last lines are those of")
        up.wait_for(r"^seawall up: [\d.]+ s: echo 1/1 running, 0 restarts, 0 handled")
        up.wait_for(r"^seawall up: [\d.]+ s: broken 0/1 (starting|restarting), \d+ restarts")
        up.signal(signal.SIGTERM)
        assert up.wait(30) == 0, up.text()
    assert up.err[-1] == "seawall up: stopped cleanly"


@pytest.mark.parametrize(
    ("top", "error"),
    [
        ('listen = "7400"', 'listen must be HOST:PORT, e.g. "127.0.0.1:7400"'),
        ('listen = "localhost:http"', "listen must be HOST:PORT"),
        (
            'transport = "nats://u:secret@127.0.0.1:4222"\nlisten = "127.0.0.1:7400"',
            "with transport = 'nats://127.0.0.1:4222' it starts none; remove listen",
        ),
    ],
)
def test_listen_mistakes_are_named(tmp_path: Path, top: str, error: str) -> None:
    data = tomllib.loads(f'{top}\n[services.a]\ntarget = "m:a"\n')
    with pytest.raises(ConfigurationError, match=re.escape(error)) as caught:
        parse_up_config(data, where="up.toml", root=tmp_path)
    assert "secret" not in str(caught.value)


def test_exit_statuses_in_words() -> None:
    assert describe_status(1) == "status 1"
    assert describe_status(-9) == "killed by SIGKILL"
    assert describe_status(EXIT_UNLOADABLE) == "status 78 (its target does not load)"


def test_the_log_tail_is_what_this_process_wrote(tmp_path: Path) -> None:
    log = tmp_path / "a.log"
    log.write_text("earlier run\n")
    start = log.stat().st_size
    with log.open("a") as out:
        out.write("".join(f"line {n}\n" for n in range(20)) + "\n")
    assert log_tail(log, start, lines=3) == ["line 17", "line 18", "line 19"]
    assert log_tail(log, log.stat().st_size) == []
    assert log_tail(tmp_path / "missing.log", 0) == []
    assert quoted(["a", "b"]) == "\n    | a\n    | b"


def test_status_lines_say_what_the_table_says() -> None:
    a = Instance("kitchen", 1, state="running", report=InstanceReport(pid=1, handled=1200))
    b = Instance("kitchen", 2, state="restarting", restarts=1)
    assert status_lines([a, b], {"kitchen": 55.4}, 12.34) == [
        "seawall up: 12.3 s: kitchen 1/2 running, restarting, 1 restarts, 1,200 handled, "
        "55 msgs/s, 0 dead"
    ]
