"""Children forked from a warm fork server, for crash tests that kill them hundreds of times.

An interpreter that imports seawall takes about half a second to start on this
machine; a test that kills a service 200 times cannot pay that 200 times. A
fork server (``multiprocessing``'s ``forkserver``) imports the child's module
once; each child is then a fork of it: a real, separate process with its own
event loop, files and sockets, started in milliseconds, killed by its pid.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any

__all__ = ["Child", "preload"]

_CONTEXT = multiprocessing.get_context("forkserver")


def preload(*modules: str) -> None:
    """Import ``modules`` in the fork server (before its first child)."""
    _CONTEXT.set_forkserver_preload(list(modules))


class Child:
    """``target(*args, ready)`` in a forked process; ``ready`` is a pipe it says ``ready`` on."""

    def __init__(self, target: Callable[..., None], *args: Any) -> None:
        self._reader, writer = _CONTEXT.Pipe(duplex=False)
        self._writer: Connection | None = writer
        self.process = _CONTEXT.Process(target=target, args=(*args, writer), daemon=True)

    @property
    def pid(self) -> int:
        assert self.process.pid is not None
        return self.process.pid

    def start(self, timeout: float = 30.0) -> None:
        """Fork the child and return once it said it is ready."""
        self.process.start()
        assert self._writer is not None
        self._writer.close()  # the child has its copy; ours would keep the pipe open
        self._writer = None
        if not self._reader.poll(timeout):
            self.kill()
            raise AssertionError(f"child {self.pid} was not ready within {timeout} s")
        assert self._reader.recv() == "ready"

    def alive(self) -> bool:
        return self.process.is_alive()

    def kill(self) -> None:
        """SIGKILL (no goodbye, as a crash) and wait for it to end."""
        if self.process.pid is not None and self.process.exitcode is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.process.pid, signal.SIGKILL)
            self.process.join(10)
        self._reader.close()
        if self._writer is not None:
            self._writer.close()
