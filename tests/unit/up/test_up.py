"""``seawall up``: real service processes on a real broker server, killed and stopped for real."""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from examples.ftgo.demo import delete_streams
from rich.console import Console
from tests.apps.up_app import Ping, Pong, Slow
from tests.brokers import NATS, require, unique

from seawall import ConfigurationError, DeadlineExceeded, RestartIntensity, SupervisorGaveUp, System
from seawall._up.config import UpConfig, load_up_config, parse_up_config
from seawall._up.lifeline import Lifeline
from seawall._up.processes import Instance, InstanceReport, Up
from seawall._up.status import Rates, handled_by_service, status_table

ROOT = Path(__file__).resolve().parents[3]

pytestmark = pytest.mark.integration


def config(tmp_path: Path, services: dict[str, Any], **top: Any) -> UpConfig:
    data = {"state": str(tmp_path / "state"), "grace": 3.0, "services": services, **top}
    return parse_up_config(data, where="test.toml", root=ROOT)


async def until(check: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    for _ in range(int(timeout / 0.02)):
        if check():
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


async def ping(system: System, n: int, timeout: float = 5.0) -> Pong:
    return await system.context().request("echo", Ping(n=n), returns=Pong, timeout=timeout)


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines()


@pytest.fixture
def out(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "notes.txt"
    monkeypatch.setenv("UP_TEST_OUT", str(path))
    return path


@pytest.fixture
async def echo_up(tmp_path: Path, out: Path) -> AsyncIterator[Up]:
    up = Up(config(tmp_path, {"echo": {"target": "tests.apps.up_app:echo", "instances": 2}}))
    async with up:
        await up.wait_ready()
        yield up


async def test_sigkilled_instance_is_restarted_and_the_service_keeps_answering(
    echo_up: Up,
) -> None:
    first, second = echo_up.instances
    async with System(transport=echo_up.transport_url) as client:
        assert (await ping(client, 1)).pid in {first.pid, second.pid}
        old = first.pid
        assert old is not None
        os.kill(old, signal.SIGKILL)
        await until(lambda: first.restarts == 1, "the restart")
        await echo_up.wait_ready()
        assert first.pid not in (None, old)
        assert first.exit_codes == [-signal.SIGKILL]
        assert second.restarts == 0
        answers = [await ping(client, n) for n in range(10)]
    assert [a.n for a in answers] == list(range(10))
    assert {a.pid for a in answers} <= {first.pid, second.pid}


async def test_stop_drains_a_handler_in_flight(echo_up: Up, out: Path) -> None:
    async with System(transport=echo_up.transport_url) as client:
        reply = client.context().request("echo", Slow(n=7, seconds=0.8), returns=Pong, timeout=8)
        await until(lambda: out.exists() and "start 7" in out.read_text(), "the handler to start")
        await echo_up.stop()  # SIGTERM: the instance stops intake and finishes the handler
        answer = await reply
    assert answer.n == 7
    assert lines(out) == ["start 7", "end 7"]
    assert [i.exit_codes for i in echo_up.instances] == [[0], [0]]  # drained, not killed
    assert {i.state for i in echo_up.instances} == {"stopped"}


async def test_an_instance_crashing_past_the_intensity_is_given_up(tmp_path: Path) -> None:
    services = {
        "echo": {"target": "tests.apps.up_app:echo"},
        "broken": {"target": "tests.apps.up_app:broken"},
    }
    restart = {"max_restarts": 2, "within": 30.0, "initial_backoff": 0.01, "max_backoff": 0.05}
    up = Up(config(tmp_path, services, restart=restart))
    with pytest.raises(SupervisorGaveUp, match="gave up on broken-1: it exited 3 times"):
        async with up:
            await asyncio.wait_for(up.gave_up.wait(), 20)
    broken = up.instances[1]
    assert broken.state == "failed"
    assert broken.restarts == 2
    assert broken.exit_codes == [1, 1, 1]
    assert any("this service cannot start" in line for line in lines(up.logs / "broken-1.log"))
    assert up.instances[0].state == "stopped"  # the healthy one was stopped, not left behind


async def test_requests_fail_with_a_deadline_while_the_system_is_down(
    tmp_path: Path, out: Path
) -> None:
    up = Up(config(tmp_path, {"echo": {"target": "tests.apps.up_app:echo"}}))
    async with up:
        await up.wait_ready()
        url = up.transport_url
        async with System(transport=url) as client:
            assert (await ping(client, 1)).n == 1
            await up.stop()
            with pytest.raises(DeadlineExceeded):
                await ping(client, 2, timeout=0.3)


def test_seawall_up_command_runs_until_sigterm_and_stops_cleanly(tmp_path: Path) -> None:
    toml = tmp_path / "seawall.toml"
    toml.write_text(
        f'state = "{tmp_path / "state"}"\ngrace = 2.0\n'
        '[services.echo]\ntarget = "tests.apps.up_app:echo"\n'
    )
    env = {**os.environ, "PYTHONPATH": f"{ROOT}:{ROOT / 'src'}", "UP_TEST_OUT": "/dev/null"}
    env.pop("SEAWALL_TRANSPORT", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "seawall", "up", str(toml)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    status = tmp_path / "state" / "status" / "echo-1.json"
    try:
        for _ in range(500):
            if status.exists() and b'"ready":true' in status.read_bytes():
                break
            assert proc.poll() is None, proc.communicate()
            subprocess.run(["sleep", "0.02"], check=True)
        else:
            raise AssertionError("echo-1 never reported ready")
        proc.send_signal(signal.SIGTERM)
        stdout, stderr = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, stderr
    assert "echo" in stdout  # the last frame of the status table
    assert "stopped" in stdout
    assert "stopped cleanly" in stderr


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("", "no \\[services.NAME\\] table"),
        ('[services.a]\ntarget = "nocolon"', "services.a.target must be MODULE:ATTR"),
        ('[services.a]\ntarget = "m:a"\ninstances = 0', "services.a.instances must be"),
        ('[services.a]\ntarget = "m:a"\ncolour = 1', "unknown key services.a.colour"),
        ('transport = "nats"\n[services.a]\ntarget = "m:a"', "is not a URL"),
        ('[restart]\nwithin = -1\n[services.a]\ntarget = "m:a"', "\\[restart\\]"),
        ("transport = [", "is not valid TOML"),
    ],
)
def test_config_errors_name_the_file_and_the_key(tmp_path: Path, text: str, error: str) -> None:
    path = tmp_path / "seawall.toml"
    path.write_text(text)
    with pytest.raises(ConfigurationError, match=error) as caught:
        load_up_config(path)
    assert str(path) in str(caught.value)


def test_config_reads_every_setting(tmp_path: Path) -> None:
    path = tmp_path / "seawall.toml"
    path.write_text(
        'transport = "nats://127.0.0.1:4222"\nstate = "run"\ngrace = 1.5\n'
        '[restart]\nmax_restarts = 2\nwithin = 5\n[env]\nA = "1"\n'
        '[services.k]\ntarget = "pkg.k:service"\ninstances = 3\n'
    )
    loaded = load_up_config(path)
    assert not loaded.embedded
    assert loaded.state_dir == tmp_path / "run"
    assert loaded.intensity == RestartIntensity(max_restarts=2, within=5.0)
    assert [(s.name, s.target, s.instances) for s in loaded.services] == [("k", "pkg.k:service", 3)]
    assert loaded.env == {"A": "1"}


async def test_the_same_config_runs_on_nats_without_a_broker_process(
    tmp_path: Path, out: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = require(NATS)
    channel = unique("up-test")
    monkeypatch.setenv("UP_TEST_CHANNEL", channel)
    up = Up(config(tmp_path, {"echo": {"target": "tests.apps.up_app:echo"}}, transport=url))
    try:
        async with up:
            await up.wait_ready()
            assert up.transport_url == url
            assert not (up.logs / "broker.log").exists()  # no embedded broker was started
            async with System(transport=url) as client:
                answer = await client.context().request(
                    channel, Ping(n=5), returns=Pong, timeout=10
                )
        assert answer.pid == up.instances[0].pid
        assert up.instances[0].exit_codes == [0]
    finally:
        await delete_streams(url, channel)


def test_status_table_sums_instances_and_counts_earlier_processes() -> None:
    kitchen = [Instance("kitchen", 1, state="running"), Instance("kitchen", 2, state="restarting")]
    kitchen[0].report = InstanceReport(pid=1, ready=True, handled=30, dead_lettered=1)
    kitchen[1].earlier.update(handled=12)  # its killed process handled 12 before it died
    kitchen[1].restarts = 1
    rates = Rates()
    rates.update(100.0, handled_by_service(kitchen))
    kitchen[0].report = InstanceReport(pid=1, ready=True, handled=50, dead_lettered=1)
    assert rates.update(102.0, handled_by_service(kitchen)) == {"kitchen": 10.0}
    console = Console(file=io.StringIO(), width=120)
    console.print(status_table(kitchen, rates.rates, "t"))
    [row] = [line for line in console.file.getvalue().splitlines() if "kitchen" in line]  # type: ignore[attr-defined]
    assert row.split("│")[1:-1] == [
        " kitchen ",
        "       1/2 ",
        " running, restarting ",
        "        1 ",
        "      62 ",
        "     10 ",
        "    1 ",
    ]


async def test_a_killed_broker_is_started_again_and_the_services_reconnect(echo_up: Up) -> None:
    broker = echo_up._broker
    assert broker is not None
    broker.kill()
    await until(lambda: echo_up.broker_restarts == 1, "the broker's restart")
    assert echo_up._broker is not broker
    answer = None
    for _ in range(40):  # the services resubscribe with their own backoff
        try:
            async with System(transport=echo_up.transport_url) as client:
                answer = await ping(client, 3, timeout=0.5)
            break
        except DeadlineExceeded:
            continue
    assert answer is not None
    assert answer.n == 3
    assert not echo_up.gave_up.is_set()


def children_of(parent: int) -> dict[int, str]:
    """Every process whose parent is ``parent``, with its command line (ps on Linux and macOS)."""
    table = subprocess.run(
        ["ps", "-A", "-ww", "-o", "pid=,ppid=,args="], capture_output=True, text=True, check=True
    ).stdout
    rows = (line.split(None, 2) for line in table.splitlines())
    return {int(pid): args for pid, ppid, args in rows if int(ppid) == parent}


def alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie waiting for its new parent to reap it has ended)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    state = subprocess.run(["ps", "-o", "stat=", "-p", str(pid)], capture_output=True, text=True)
    return state.stdout.strip()[:1] not in ("", "Z")


def start_seawall_up(tmp_path: Path, services: str) -> subprocess.Popen[str]:
    toml = tmp_path / "seawall.toml"
    toml.write_text(f'state = "{tmp_path / "state"}"\ngrace = 2.0\n{services}')
    env = {**os.environ, "PYTHONPATH": f"{ROOT}:{ROOT / 'src'}"}
    env.pop("SEAWALL_TRANSPORT", None)
    return subprocess.Popen(
        [sys.executable, "-m", "seawall", "up", str(toml)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        text=True,
    )


async def test_sigkilled_seawall_up_takes_the_broker_and_every_service_with_it(
    tmp_path: Path, out: Path
) -> None:
    proc = start_seawall_up(
        tmp_path, '[services.echo]\ntarget = "tests.apps.up_app:echo"\ninstances = 2\n'
    )
    status = [tmp_path / "state" / "status" / f"echo-{n}.json" for n in (1, 2)]
    children: dict[int, str] = {}
    try:
        await until(
            lambda: all(f.exists() and b'"ready":true' in f.read_bytes() for f in status),
            "both instances to report ready",
            timeout=30,
        )
        children = children_of(proc.pid)
        [broker] = [pid for pid, args in children.items() if " broker " in args]
        assert len(children) == 3  # the broker and two instances
        socket = children[broker].split("--unix ")[1].split()[0]
        async with System(transport=f"seawall+unix://{socket}") as client:
            await client.context().send("echo", Slow(n=7, seconds=1.0))
            await until(lambda: out.exists() and "start 7" in out.read_text(), "the handler")
        proc.kill()  # while the handler of Slow 7 is in flight
        proc.wait()
        await until(lambda: not any(map(alive, children)), "every child to end", timeout=15)
    finally:
        proc.kill()
        proc.wait()
        for pid in filter(alive, children):  # leave nothing behind when the test fails
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    assert lines(out) == ["start 7", "end 7"]  # the instance drained as on SIGTERM
    broker_log = (tmp_path / "state" / "logs" / "broker.log").read_text()
    assert "seawall broker: stopped cleanly" in broker_log  # closed, not killed


LIFELINE_CHILD = """
import signal, sys, time
from seawall._up.lifeline import hold
drain = lambda *_: sys.exit(0)  # noqa: E731
signal.signal(signal.SIGTERM, drain if sys.argv[2] == "drains" else signal.SIG_IGN)
hold(int(sys.argv[1]), backstop=0.5)
print("holding", flush=True)
while True:
    time.sleep(1)
"""


@pytest.mark.parametrize(("behaviour", "status"), [("drains", 0), ("hangs", 70)])
def test_a_cut_lifeline_stops_the_child_through_sigterm_then_the_backstop(
    behaviour: str, status: int
) -> None:
    # the parent stays alive, so only the pipe (the portable watch) can tell the child
    lifeline = Lifeline()
    with subprocess.Popen(
        [sys.executable, "-c", LIFELINE_CHILD, str(lifeline.fd), behaviour],
        pass_fds=[lifeline.fd],
        stdout=subprocess.PIPE,
        text=True,
    ) as child:
        try:
            assert child.stdout is not None
            assert child.stdout.readline() == "holding\n"
            assert child.poll() is None
        finally:
            lifeline.close()
        assert child.wait(timeout=10) == status
