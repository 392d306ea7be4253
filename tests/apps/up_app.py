"""Services for the ``seawall up`` tests: run by :mod:`seawall._up.child` in real processes.

``echo`` (on channel ``UP_TEST_CHANNEL``, default ``echo``) answers :class:`Ping`
with its pid (so a test sees which process answered) and handles :class:`Slow`
by writing ``start <n>`` to the file named by ``UP_TEST_OUT``, sleeping
``seconds``, then writing ``end <n>``, so a test can stop the process
mid-handler and check the handler still finished. ``broken`` fails on
start-up, every time.
"""

from __future__ import annotations

import asyncio
import os

from seawall import Command, Document, Service


class Ping(Command, frozen=True):
    n: int


class Pong(Document, frozen=True):
    n: int
    pid: int


class Slow(Command, frozen=True):
    n: int
    seconds: float


def _note(line: str) -> None:
    with open(os.environ["UP_TEST_OUT"], "a") as out:
        out.write(line + "\n")


def echo() -> Service:
    service = Service(os.environ.get("UP_TEST_CHANNEL", "echo"))

    @service.command
    async def ping(cmd: Ping) -> Pong:
        return Pong(n=cmd.n, pid=os.getpid())

    @service.command
    async def slow(cmd: Slow) -> Pong:
        _note(f"start {cmd.n}")
        await asyncio.sleep(cmd.seconds)
        _note(f"end {cmd.n}")
        return Pong(n=cmd.n, pid=os.getpid())

    return service


def broken() -> Service:
    raise RuntimeError("this service cannot start (on purpose, for the tests)")
