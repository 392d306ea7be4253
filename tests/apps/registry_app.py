"""Services for the registry, ps and scaling tests, run in real processes.

``ledger`` (channel ``REGISTRY_TEST_SERVICE``, default ``ledger``) answers
:class:`Record` with its pid and, when ``REGISTRY_TEST_OUT`` names a file,
appends the record's id and the handling pid to it once handled (the delivered side of a queue
checker: the test compares it with the ids it got an acknowledgement for).
``relay`` takes :class:`Forward` and sends a :class:`Record` on to the ledger,
so a system of two services has work crossing between them.
"""

from __future__ import annotations

import asyncio
import os

from seawall import Command, Context, Document, Service


class Record(Command, frozen=True):
    id: str
    seconds: float = 0.0


class Recorded(Document, frozen=True):
    id: str
    pid: int


class Forward(Command, frozen=True):
    id: str


def _note(line: str) -> None:
    out = os.environ.get("REGISTRY_TEST_OUT")
    if out:
        with open(out, "a") as sink:
            sink.write(line + "\n")


def ledger() -> Service:
    service = Service(os.environ.get("REGISTRY_TEST_SERVICE", "ledger"))

    @service.command
    async def record(cmd: Record) -> Recorded:
        if cmd.seconds:
            await asyncio.sleep(cmd.seconds)
        _note(f"{cmd.id} {os.getpid()}")
        return Recorded(id=cmd.id, pid=os.getpid())

    return service


def relay() -> Service:
    service = Service(os.environ.get("REGISTRY_TEST_RELAY", "relay"))
    target = os.environ.get("REGISTRY_TEST_SERVICE", "ledger")

    @service.command
    async def forward(cmd: Forward, ctx: Context) -> None:
        await ctx.send(target, Record(id=cmd.id))

    return service
