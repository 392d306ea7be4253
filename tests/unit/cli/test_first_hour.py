"""``seawall run`` in the first hour: real commands, as a newcomer types them.

The README's service runs from ``examples/quickstart`` and says where it runs
(warning on ``memory://``); a target that is no service gets an error that says
what it is and what would run; a second Ctrl-C ends a draining process at once.
"""

from __future__ import annotations

import asyncio
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from tests.apps.up_app import Ping, Pong, Slow
from tests.commands import ROOT, Command

from seawall import System

QUICKSTART = ROOT / "examples" / "quickstart"


def test_the_readme_service_runs_and_names_its_transport_with_a_warning_for_memory() -> None:
    with Command("run", "shop:orders", cwd=QUICKSTART) as run:
        run.wait_for(r"^seawall run: shop:orders serving orders on memory://; Ctrl-C", stream="err")
        warning = run.wait_for(r"warning: the transport is memory:// \(the default\)", stream="err")
        assert "no other process can reach them" in warning.string
        assert "--transport seawall://127.0.0.1:7400" in warning.string  # what to use instead
        run.signal(signal.SIGTERM)
        assert run.wait(20) == 0, run.text()
    assert run.err[-1] == "seawall: shop:orders stopped cleanly"


def test_a_durable_transport_is_named_without_a_warning(tmp_path: Path) -> None:
    url = f"embedded://{tmp_path}/data"
    with Command("run", "shop:orders", "--transport", url, cwd=QUICKSTART) as run:
        run.wait_for(rf"serving orders on {re.escape(url)};", stream="err")
        run.signal(signal.SIGINT)
        assert run.wait(20) == 0, run.text()
    assert not any("warning" in line for line in run.err)


@pytest.mark.parametrize(
    ("target", "said"),
    [
        (
            "shop:PlaceOrder",
            "shop:PlaceOrder is a Command class (a message payload), not something to run; a "
            "target names a Service, a System, a list of services, or a function returning one "
            "of those; these would run: shop:orders",
        ),
        ("shop:ordrs", "module 'shop' has no attribute 'ordrs'; these would run: shop:orders"),
        ("shpo:orders", "cannot import module 'shpo': no module 'shpo' on the Python path"),
        ("shop:place", "shop:place takes arguments (cmd, ctx), but a target function is called"),
    ],
)
def test_a_target_that_is_no_service_gets_a_clear_error(target: str, said: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "seawall", "run", target],
        cwd=QUICKSTART,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 1
    assert said in done.stderr
    assert "Traceback" not in done.stderr


async def _start_slow_work(url: str) -> None:
    async with System(transport=url) as client:
        assert await client.context().request("echo", Ping(n=1), returns=Pong, timeout=10)
        await client.context().send("echo", Slow(n=1, seconds=60))


def _until(check: object, what: str, timeout: float = 20.0) -> None:
    end = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        assert time.monotonic() < end, f"timed out waiting for {what}"
        time.sleep(0.02)


def test_a_second_ctrl_c_ends_seawall_run_at_once_while_a_handler_drains(tmp_path: Path) -> None:
    socket, notes = tmp_path / "broker.sock", tmp_path / "notes.txt"
    url = f"seawall+unix://{socket}"
    with Command("broker", "--data", str(tmp_path / "data"), "--unix", str(socket)) as broker:
        broker.wait_for("listening on", stream="err")
        echo = ("run", "tests.apps.up_app:echo", "--transport", url, "--grace", "60")
        with Command(*echo, env={"UP_TEST_OUT": str(notes)}) as run:
            run.wait_for("serving echo on", stream="err")
            asyncio.run(_start_slow_work(url))
            _until(lambda: notes.exists() and "start 1" in notes.read_text(), "the handler")
            run.signal(signal.SIGINT)
            run.wait_for("draining .*a second Ctrl-C exits at once", stream="err")
            time.sleep(0.5)
            assert run.proc.poll() is None  # the first Ctrl-C waits for the handler (60 s)
            second = time.monotonic()
            run.signal(signal.SIGINT)
            assert run.wait(10) == 130, run.text()
            assert time.monotonic() - second < 5
        assert any("a second Ctrl-C" in line and "without draining" in line for line in run.err)
        broker.signal(signal.SIGTERM)
        assert broker.wait(20) == 0
