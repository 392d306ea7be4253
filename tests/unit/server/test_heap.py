"""The broker-only process's collector settings (seawall._server.heap)."""

from __future__ import annotations

import subprocess
import sys

PROBE = """
import gc
from seawall._server.heap import YOUNG, settle_for_serving
before = gc.get_threshold()
kept = [object() for _ in range(1000)]
settle_for_serving()
after = gc.get_threshold()
assert after == (YOUNG, before[1], before[2]), (before, after)
assert gc.get_freeze_count() >= len(kept), gc.get_freeze_count()
print("ok")
"""


def test_settling_freezes_start_up_and_spaces_young_collections() -> None:
    # In a child process: the settings are process-wide and must not leak into the test run.
    run = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=60, check=False
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "ok"
