"""Elasticity of ``seawall up`` under load: scale 1 -> 3 -> 1, rolling restarts.

Real service processes on the embedded broker server ``seawall up`` starts,
commanded through its control socket (``seawall scale`` as a real command in
one test). A queue checker runs beside the load: every id whose send was
acknowledged must be handled at least once (each handled id is written to a
file by the process that handled it); nothing acknowledged may be missing.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from tests.apps.registry_app import Forward, Record

from seawall import ServiceError, System
from seawall._cli.ps import broker_url, listen
from seawall._up.config import load_up_config
from seawall._up.control import Control, ask
from seawall._up.processes import Up

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow


@dataclass
class Checker:
    """Acknowledged sends on one side, handled ids (with their pids) on the other."""

    out: Path
    acknowledged: list[str] = field(default_factory=list)

    def handled(self) -> dict[str, set[int]]:
        seen: dict[str, set[int]] = {}
        if self.out.exists():
            for line in self.out.read_text().splitlines():
                ident, pid = line.split()
                seen.setdefault(ident, set()).add(int(pid))
        return seen

    async def all_handled(self, timeout: float = 30.0) -> dict[str, set[int]]:
        for _ in range(int(timeout / 0.1)):
            seen = self.handled()
            if set(self.acknowledged) <= seen.keys():
                return seen
            await asyncio.sleep(0.1)
        missing = sorted(set(self.acknowledged) - self.handled().keys())
        raise AssertionError(f"{len(missing)} acknowledged ids never handled: {missing[:10]}")


@contextlib.asynccontextmanager
async def load(url: str, checker: Checker, channel: str, rate: float) -> AsyncIterator[None]:
    """Send to ``channel`` at ``rate`` per second while the block runs."""
    stop = asyncio.Event()

    async def run() -> None:
        async with System(transport=url, registry=False) as client:
            ctx = client.context()
            n = 0
            while not stop.is_set():
                ident = f"m{n}"
                payload = Record(id=ident) if channel == "ledger" else Forward(id=ident)
                await ctx.send(channel, payload)
                checker.acknowledged.append(ident)  # the broker has it: it must be handled
                n += 1
                await asyncio.sleep(1 / rate)

    task = asyncio.create_task(run())
    try:
        yield
    finally:
        stop.set()
        await task


def write_config(tmp_path: Path, services: str) -> Path:
    file = tmp_path / "seawall.toml"
    file.write_text(f'state = "{tmp_path / "state"}"\ngrace = 5.0\n\n{services}')
    return file


@pytest.fixture
def out(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "handled.txt"
    monkeypatch.setenv("REGISTRY_TEST_OUT", str(path))
    monkeypatch.setenv("PYTHONPATH", str(ROOT))  # the services import tests.apps
    return path


def pids(up: Up, service: str) -> set[int]:
    return {i.pid for i in up.instances if i.service == service and i.pid is not None}


async def scale_command(file: Path, service: str, count: int) -> str:
    """``seawall scale SERVICE COUNT --file FILE``, as a user types it."""
    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'src'}:{ROOT}"}
    proc = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "seawall", "scale", service, str(count), "--file", str(file)),
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    said, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    return said.decode()


async def test_scaling_1_to_3_to_1_under_load_loses_nothing(tmp_path: Path, out: Path) -> None:
    file = write_config(tmp_path, '[services.ledger]\ntarget = "tests.apps.registry_app:ledger"\n')
    config = load_up_config(file)
    checker = Checker(out)
    async with Up(config) as up, Control(up):
        await up.wait_ready()
        (first,) = pids(up, "ledger")
        async with load(up.transport_url, checker, "ledger", rate=100):
            await asyncio.sleep(1.0)
            assert "ledger: 3 instances (was 1)" in await scale_command(file, "ledger", 3)
            assert len(pids(up, "ledger")) == 3
            three = pids(up, "ledger")
            live = await listen(broker_url(file), 1.4)  # what seawall ps in that directory says
            assert {a.pid for a in live if a.service == "ledger"} == three
            await asyncio.sleep(0.6)
            said = await ask(
                config.state_dir, {"command": "scale", "service": "ledger", "instances": 1}
            )
            assert said == "ledger: 1 instance (was 3)"
            assert pids(up, "ledger") == {first}  # the newest went first
            await asyncio.sleep(1.0)
        seen = await checker.all_handled()
    assert len(checker.acknowledged) > 100
    assert set().union(*seen.values()) <= three
    with pytest.raises(ServiceError, match="no seawall up is running"):
        await ask(config.state_dir, {"command": "scale", "service": "ledger", "instances": 2})


async def test_a_rolling_restart_under_load_keeps_every_message(tmp_path: Path, out: Path) -> None:
    file = write_config(
        tmp_path,
        '[services.ledger]\ntarget = "tests.apps.registry_app:ledger"\n\n'
        '[services.relay]\ntarget = "tests.apps.registry_app:relay"\n',
    )
    config = load_up_config(file)
    checker = Checker(out)
    async with Up(config) as up, Control(up):
        await up.wait_ready()
        before = pids(up, "ledger") | pids(up, "relay")
        names = [i.name for i in up.instances]
        async with load(up.transport_url, checker, "relay", rate=100):
            await asyncio.sleep(1.0)
            said = await ask(config.state_dir, {"command": "restart", "service": None})
            assert said == "restarted 2 instances of ledger, relay"
            await asyncio.sleep(1.0)
        after = pids(up, "ledger") | pids(up, "relay")
        assert len(after) == 2
        assert not before & after  # every process was replaced
        assert [i.name for i in up.instances] == names  # each as the same instance
        assert all(i.exit_codes[-1:] in ([0], []) for i in up.instances)
        seen = await checker.all_handled()
        with pytest.raises(ServiceError, match="no service 'nope' in this system"):
            await ask(config.state_dir, {"command": "restart", "service": "nope"})
    assert len(checker.acknowledged) > 100
    assert set().union(*seen.values()) <= before | after
