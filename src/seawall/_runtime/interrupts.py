"""Ctrl-C twice: the first signal drains gracefully, a second Ctrl-C exits at once.

Part of the runtime, for the processes that serve until a signal (``seawall
run``, each ``seawall up`` instance, ``seawall up`` itself). Inside
:func:`interrupts`, the first SIGINT or SIGTERM calls ``stop`` in the event loop
(the graceful path). From then on the signals go to plain handlers instead,
outside the event loop, so that a loop kept busy by a stuck handler still hears
the next Ctrl-C (SIGINT): it calls ``force`` (e.g. kill child processes), writes
its message to stderr and ends the process with status 130, draining nothing.
A later SIGTERM changes nothing: process managers send it once and follow with
SIGKILL if they must, and a child of ``seawall up`` may get it twice when its
supervisor dies (:mod:`seawall._up.lifeline`), which must still drain. A block
left before any signal puts the loop's handlers back as they were.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import Callable, Iterator
from types import FrameType

__all__ = ["FORCED_EXIT", "SIGNALS", "interrupts"]

SIGNALS = (signal.SIGINT, signal.SIGTERM)
FORCED_EXIT = 130
"""The exit status after a second Ctrl-C (128 + SIGINT, as a shell reports Ctrl-C)."""


def _nothing() -> None:
    pass


def _draining_already(signum: int, frame: FrameType | None) -> None:
    pass


@contextlib.contextmanager
def interrupts(
    stop: Callable[[], object], *, second: str, force: Callable[[], object] = _nothing
) -> Iterator[None]:
    """Call ``stop`` on the first signal; on a later SIGINT ``force``, then exit with ``second``."""
    loop = asyncio.get_running_loop()
    fired = False

    def exit_now(signum: int, frame: FrameType | None) -> None:
        try:
            force()
        finally:
            os.write(2, f"{second}\n".encode())
            os._exit(FORCED_EXIT)

    def first() -> None:
        nonlocal fired
        fired = True
        for signum in SIGNALS:
            loop.remove_signal_handler(signum)
        signal.signal(signal.SIGINT, exit_now)
        signal.signal(signal.SIGTERM, _draining_already)
        stop()

    for signum in SIGNALS:
        loop.add_signal_handler(signum, first)
    try:
        yield
    finally:
        if not fired:
            for signum in SIGNALS:
                loop.remove_signal_handler(signum)
