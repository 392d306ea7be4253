"""Real ``seawall`` commands for the CLI tests: started, read line by line, stopped, cleaned up.

:class:`Command` runs ``python -m seawall ARGS`` with the repository on the
Python path and reads its stdout and stderr on threads, so a test can wait for
a line (bounded in time) while the process keeps running, then send it signals.
Leaving the ``with`` block kills what is still running, its own process group
members included (``seawall up`` starts each child in a group of its own, so
they are found by their parent's pid).
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import IO, Self

ROOT = Path(__file__).resolve().parents[1]

__all__ = ["ROOT", "Command", "children_of"]


def children_of(pid: int) -> list[int]:
    """Pids of the direct children of ``pid`` (Linux /proc)."""
    found = []
    for status in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = status.read_text().rsplit(")", 1)[1].split()
            if int(fields[1]) == pid:
                found.append(int(status.parent.name))
    return found


class Command:
    """``python -m seawall *args`` in ``cwd``; its output lines in :attr:`out` and :attr:`err`."""

    def __init__(self, *args: str, cwd: Path = ROOT, env: dict[str, str] | None = None) -> None:
        environ = {k: v for k, v in os.environ.items() if not k.startswith("SEAWALL_")}
        environ["PYTHONPATH"] = f"{ROOT}{os.pathsep}{ROOT / 'src'}"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "seawall", *args],
            cwd=cwd,
            env={**environ, **(env or {})},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.out: list[str] = []
        self.err: list[str] = []
        self._readers = [
            threading.Thread(target=self._read, args=(stream, into), daemon=True)
            for stream, into in ((self.proc.stdout, self.out), (self.proc.stderr, self.err))
        ]
        for reader in self._readers:
            reader.start()
        self._children: set[int] = set()

    def _read(self, stream: IO[str], into: list[str]) -> None:
        for line in stream:
            into.append(line.rstrip("\n"))

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.remember_children()
        if self.proc.poll() is None:
            self.proc.kill()
        self.wait(timeout=10)
        for pid in self._children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()

    def remember_children(self) -> list[int]:
        """The process's children now, also killed when the block ends."""
        children = children_of(self.proc.pid)
        self._children.update(children)
        return children

    def wait_for(
        self, pattern: str, *, stream: str = "out", timeout: float = 30.0
    ) -> re.Match[str]:
        """The first line of ``stream`` matching ``pattern``, waiting up to ``timeout`` s."""
        lines = self.out if stream == "out" else self.err
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            for line in list(lines):
                found = re.search(pattern, line)
                if found:
                    return found
            if self.proc.poll() is not None and not any(r.is_alive() for r in self._readers):
                break
            time.sleep(0.02)
        raise AssertionError(f"no line matching {pattern!r} in {stream}:\n{self.text()}")

    def signal(self, signum: signal.Signals) -> None:
        self.proc.send_signal(signum)

    def wait(self, timeout: float) -> int:
        """The exit status, once the process ended and its output was read."""
        code = self.proc.wait(timeout=timeout)
        for reader in self._readers:
            reader.join(timeout=5)
        return code

    def text(self) -> str:
        return "\n".join(["--- stdout", *self.out, "--- stderr", *self.err])
