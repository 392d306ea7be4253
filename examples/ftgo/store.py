"""Each service's own state: one SQLite file per service, private to it.

A service writes its facts (tickets, authorizations, assignments...) here and
nowhere else; the demo's auditor reads the files only after the run, to check
the invariants from what the services themselves recorded. Two instances of a
service share its file (SQLite's WAL mode and busy timeout serialise them).
``FTGO_STATE`` names the directory (by default ``ftgo`` in the state directory of
``seawall up``).
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path
from typing import Any

__all__ = ["Store", "state_dir"]


def state_dir() -> Path:
    """``FTGO_STATE``, else ``ftgo`` in the state directory of ``seawall up``."""
    if "FTGO_STATE" in os.environ:
        return Path(os.environ["FTGO_STATE"])
    return Path(os.environ.get("SEAWALL_UP_STATE", ".seawall")) / "ftgo"


class Store:
    """A service's SQLite file, created with ``schema`` on first use."""

    def __init__(self, service: str, schema: str, *, folder: Path | None = None) -> None:
        folder = folder or state_dir()
        folder.mkdir(parents=True, exist_ok=True)
        self.path = folder / f"{service}.db"
        self.db = sqlite3.connect(self.path, isolation_level=None, timeout=10.0)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.executescript(schema)

    def run(self, sql: str, *params: Any) -> int:
        """Execute one statement in its own transaction; the number of rows it changed."""
        return self.db.execute(sql, params).rowcount

    def one(self, sql: str, *params: Any) -> tuple[Any, ...] | None:
        row: tuple[Any, ...] | None = self.db.execute(sql, params).fetchone()
        return row

    def all(self, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        return list(self.db.execute(sql, params).fetchall())
