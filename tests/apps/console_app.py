"""A service for the console's browser tests: run by ``seawall up`` in a real process.

``ledger`` posts :class:`Post` entries by appending ``n`` to the file named by
``CONSOLE_TEST_OUT``, but fails (at once: one attempt, then a dead letter) while
the file named by ``CONSOLE_TEST_BROKEN`` exists: the cause a test fixes by
removing it, before redriving the dead letter from the page.
"""

from __future__ import annotations

import os
from pathlib import Path

from seawall import Command, RetryPolicy, Service


class Post(Command, frozen=True):
    type_name = "ledger.Post"

    n: int


def ledger() -> Service:
    service = Service("ledger")

    @service.subscribe("ledger", retry=RetryPolicy(max_attempts=1))
    async def post(cmd: Post) -> None:
        # tiny local files, as up_app does: not worth a thread
        if Path(os.environ["CONSOLE_TEST_BROKEN"]).exists():  # noqa: ASYNC240
            raise RuntimeError(f"entry {cmd.n}: the ledger is closed for the night")
        with open(os.environ["CONSOLE_TEST_OUT"], "a") as out:  # noqa: ASYNC230
            out.write(f"{cmd.n}\n")

    return service
