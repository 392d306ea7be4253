"""What a child's exit means to ``seawall up``: its status in words, and its last words.

Part of the edges layer (``seawall up``). A child process writes to its own log
file (``logs/NAME.log``, appended to across restarts); when it exits on its own,
the lines it wrote since it was started are the cause, more often than not, so
:func:`log_tail` reads the last of them for the terminal. A child whose target
cannot be loaded (misspelled, not a service, a syntax error: see
:mod:`seawall._runtime.target`) exits with :data:`EXIT_UNLOADABLE`, and starting
it again cannot help.
"""

from __future__ import annotations

import signal
from pathlib import Path

__all__ = ["EXIT_UNLOADABLE", "describe_status", "log_tail", "quoted"]

EXIT_UNLOADABLE = 78
"""The status of a child whose target does not load (``EX_CONFIG`` of sysexits.h)."""

_TAIL_BYTES = 16 * 1024


def describe_status(code: int) -> str:
    """``status 1``, ``killed by SIGKILL``, ``status 78 (its target does not load)``."""
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    if code == EXIT_UNLOADABLE:
        return f"status {code} (its target does not load)"
    return f"status {code}"


def log_tail(path: Path, start: int, lines: int = 10) -> list[str]:
    """The last ``lines`` lines written to ``path`` from byte ``start`` on."""
    try:
        with path.open("rb") as log:
            end = log.seek(0, 2)
            log.seek(max(start, end - _TAIL_BYTES))
            text = log.read().decode(errors="replace")
    except OSError:
        return []
    return [line for line in text.splitlines() if line.strip()][-lines:]


def quoted(lines: list[str]) -> str:
    """Lines of a log, set off for a terminal message."""
    return "".join(f"\n    | {line}" for line in lines)
