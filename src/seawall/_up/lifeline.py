"""Children of ``seawall up`` end with their supervisor, even one killed with SIGKILL.

Part of the edges layer. The supervisor opens one :class:`Lifeline`, a pipe
it never writes to: it keeps the write end for as long as it lives and every
child it starts (the embedded broker and the service processes) inherits the
read end. First thing in the child, :func:`hold` arms two watches:

* **the pipe**, on every POSIX system: a daemon thread blocks reading it.
  However the supervisor dies, the kernel closes its write end, the read
  returns end-of-file, and the thread sends SIGTERM to its own process, which
  then takes the same path as an ordinary stop (drain, then exit). A
  supervisor that died before the child got this far is caught too: the pipe
  is already at end-of-file.
* **PR_SET_PDEATHSIG**, on Linux: the kernel itself sends SIGTERM when the
  parent dies, without waiting for the thread to be scheduled. (It fires when
  the *thread* that started the child ends, which for ``seawall up`` is the
  thread running its event loop.)

A child still alive ``backstop`` seconds after the supervisor went away (a
drain stuck on a broker that died with it, say) exits at once, so nothing
outlives its owner by more than a bounded time.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
import sys
import threading

__all__ = ["Lifeline", "hold"]

log = logging.getLogger("seawall.up")

_PR_SET_PDEATHSIG = 1
_BACKSTOP_STATUS = 70
"""Exit status of a child that had to be ended by the backstop, not by its drain."""


class Lifeline:
    """The supervisor's side: a pipe whose read end its children inherit (``fd``)."""

    def __init__(self) -> None:
        self.fd, self._write = os.pipe()

    def close(self) -> None:
        """Cut the line (children still holding it stop), then drop the read end too."""
        for fd in (self._write, self.fd):
            with contextlib.suppress(OSError):
                os.close(fd)


def hold(fd: int, *, backstop: float) -> None:
    """Stop this process (SIGTERM to itself) when the supervisor owning ``fd`` goes away."""
    _ask_kernel_for_sigterm()
    watch = threading.Thread(
        target=_watch, args=(fd, backstop), name="seawall-up-lifeline", daemon=True
    )
    watch.start()


def _ask_kernel_for_sigterm() -> None:
    if sys.platform != "linux":
        return
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0) != 0:
        log.warning(
            "prctl(PR_SET_PDEATHSIG) failed (errno %d); the pipe alone watches the supervisor",
            ctypes.get_errno(),
        )


def _watch(fd: int, backstop: float) -> None:
    with contextlib.suppress(OSError):
        while os.read(fd, 512):  # nobody writes: this returns only at end-of-file
            pass
    log.warning("the supervising process went away; stopping (as on SIGTERM)")
    os.kill(os.getpid(), signal.SIGTERM)
    threading.Event().wait(backstop)
    log.error("still running %.3g s after the supervisor went away; exiting now", backstop)
    os._exit(_BACKSTOP_STATUS)
