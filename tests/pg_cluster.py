"""A private PostgreSQL cluster with ``wal_level = logical``, for log tailing tests and bench.

The machine's shared server runs ``wal_level = replica``, which logical decoding
cannot read; changing it needs a restart that would disturb everyone else. So
the tests that tail the log start a cluster of their own: ``initdb`` into a
temporary directory, ``pg_ctl start`` on a free loopback port (as the
``postgres`` OS user when run as root: PostgreSQL refuses to run as root),
and ``pg_ctl stop`` plus removal of the directory at the end. ``fsync=off``
unless asked (the benchmark asks): these tests kill relays, never the server.

``SEAWALL_TEST_PG_BIN`` names the directory with ``initdb`` and ``pg_ctl``;
by default the newest ``/usr/lib/postgresql/<version>/bin``.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

__all__ = ["ClusterUnavailable", "LogicalCluster", "logical_cluster"]


class ClusterUnavailable(RuntimeError):
    """PostgreSQL's server programs are not installed, or the cluster did not start."""


def _bin_dir() -> Path:
    if "SEAWALL_TEST_PG_BIN" in os.environ:
        return Path(os.environ["SEAWALL_TEST_PG_BIN"])
    found = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"),
        key=lambda path: int(Path(path).parts[-3]) if Path(path).parts[-3].isdigit() else 0,
    )
    if not found:
        raise ClusterUnavailable(
            "no PostgreSQL server programs (initdb, pg_ctl) found under /usr/lib/postgresql; "
            "apt-get install postgresql, or set SEAWALL_TEST_PG_BIN"
        )
    return Path(found[-1]).parent


class LogicalCluster:
    """One private cluster: its data directory, port and URL."""

    def __init__(self, port: int, *, fsync: bool = False) -> None:
        self.bin = _bin_dir()
        self.port = port
        self.fsync = fsync
        self.root = Path(tempfile.mkdtemp(prefix="seawall-pg-"))
        self.data = self.root / "data"
        self.url = f"postgresql://postgres@127.0.0.1:{port}/postgres"
        self._as_postgres = os.geteuid() == 0
        if self._as_postgres:
            user = pwd.getpwnam("postgres")
            os.chown(self.root, user.pw_uid, user.pw_gid)

    def _run(self, program: str, *args: str) -> None:
        prefix = ["runuser", "-u", "postgres", "--"] if self._as_postgres else []
        done = subprocess.run(
            [*prefix, str(self.bin / program), *args], capture_output=True, text=True, timeout=60
        )
        if done.returncode != 0:
            raise ClusterUnavailable(f"{program} {' '.join(args)} failed: {done.stderr.strip()}")

    def start(self) -> None:
        """initdb and start the server; returns once it accepts connections."""
        self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync")
        options = " ".join(
            (
                "-c wal_level=logical",
                f"-c port={self.port}",
                "-c listen_addresses=127.0.0.1",
                f"-c unix_socket_directories={self.root}",
                f"-c fsync={'on' if self.fsync else 'off'}",
                "-c shared_buffers=32MB",
                "-c max_replication_slots=8",
            )
        )
        log = self.root / "server.log"
        self._run("pg_ctl", "-D", str(self.data), "-l", str(log), "-o", options, "-w", "start")

    def pid(self) -> int | None:
        """The postmaster's process id, while it runs."""
        with contextlib.suppress(OSError, ValueError, IndexError):
            return int((self.data / "postmaster.pid").read_text().split()[0])
        return None

    def stop(self) -> None:
        """Stop the server (fast shutdown; by its pid if pg_ctl cannot) and remove its files."""
        try:
            if self.pid() is not None:
                self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")
        except (ClusterUnavailable, subprocess.TimeoutExpired):
            pid = self.pid()
            if pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGQUIT)  # the postmaster's immediate shutdown
        finally:
            shutil.rmtree(self.root, ignore_errors=True)


@contextlib.contextmanager
def logical_cluster(port: int, *, fsync: bool = False) -> Iterator[LogicalCluster]:
    """A running private cluster on ``port``, stopped and removed when the block ends."""
    cluster = LogicalCluster(port, fsync=fsync)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()
