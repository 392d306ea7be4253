"""``seawall broker`` as a real child process, for the tests that kill and restart it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

__all__ = ["ROOT", "start_broker", "stop"]

ROOT = Path(__file__).resolve().parent.parent


def start_broker(data: Path, port: int, *extra: str) -> subprocess.Popen[str]:
    """Start ``seawall broker`` on ``127.0.0.1:port`` and return once it listens."""
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    proc = subprocess.Popen(
        [
            *(sys.executable, "-m", "seawall", "broker"),
            *("--data", str(data), "--listen", f"127.0.0.1:{port}", *extra),
        ],
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stderr is not None
    line = proc.stderr.readline()
    assert "listening on 127.0.0.1" in line, line
    return proc


def stop(proc: subprocess.Popen[str], how: int) -> str:
    """Send ``how`` (a signal), wait for the process to end and return its stderr."""
    proc.send_signal(how)
    proc.wait(timeout=10)
    assert proc.stderr is not None
    with proc.stderr:
        return proc.stderr.read()
