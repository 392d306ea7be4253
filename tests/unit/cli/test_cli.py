"""The seawall command and graceful shutdown of real processes on signals."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
SEAWALL = [sys.executable, "-m", "seawall"]


def _spawn(*args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        args, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def _wait_for_line(proc: subprocess.Popen[str], wanted: str, timeout: float = 20.0) -> list[str]:
    assert proc.stdout is not None
    lines: list[str] = []
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line.strip())
        if line.strip() == wanted:
            return lines
    proc.kill()
    pytest.fail(f"never saw {wanted!r}; got {lines}")


def test_version() -> None:
    out = subprocess.run([*SEAWALL, "--version"], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "seawall, version 0.1.0"


def test_run_rejects_a_bad_target_clearly() -> None:
    out = subprocess.run(
        [*SEAWALL, "run", "tests.apps.slow_app:nothing"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )
    assert out.returncode == 1
    assert "module 'tests.apps.slow_app' has no attribute 'nothing'" in out.stderr
    assert "Traceback" not in out.stderr


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_run_stops_cleanly_on_signal(sig: signal.Signals) -> None:
    proc = _spawn(*SEAWALL, "run", "tests.apps.slow_app:make_system", "--log-level", "INFO")
    assert proc.stderr is not None
    end = time.monotonic() + 20
    seen = ""
    while "running" not in seen and time.monotonic() < end:
        seen += proc.stderr.readline()
    assert "running ['worker']" in seen
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    assert "stopped cleanly" in err


def test_sigterm_drains_in_flight_work_before_exit() -> None:
    proc = _spawn(sys.executable, "-m", "tests.apps.slow_app", "6")
    lines = _wait_for_line(proc, "ready")
    lines += _wait_for_line(proc, "start 3")  # 4 workers busy, 2 jobs still queued
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=20)
    lines += out.split()
    text = " ".join(lines)
    assert proc.returncode == 0, err
    started = {int(n) for n in text.split("start ")[1:] for n in [n.split()[0]]}
    finished = {int(n) for n in text.split("done ")[1:] for n in [n.split()[0]]}
    assert started == finished == {0, 1, 2, 3}  # in-flight work finished; intake stopped
    assert text.endswith("drained")
