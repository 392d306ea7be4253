"""A system for the signal tests: slow handlers, and a feeder that starts work."""

from __future__ import annotations

import asyncio
import sys

from seawall import Command, Service, System


class Work(Command, frozen=True):
    n: int


worker = Service("worker", concurrency=4)


@worker.command
async def work(job: Work) -> None:
    print(f"start {job.n}", flush=True)
    await asyncio.sleep(0.5)
    print(f"done {job.n}", flush=True)


def make_system() -> System:
    return System(worker, transport="memory://", grace=5.0)


async def serve_with_work(count: int) -> None:
    """Run the system, queue ``count`` jobs, and serve until a signal arrives."""
    system = make_system()
    serving = asyncio.ensure_future(system.serve())
    while system._node is None or not all(d.ready.is_set() for d in system.dispatchers):  # noqa: ASYNC110
        await asyncio.sleep(0.01)  # serve() enters the system; poll until it has subscribed
    for n in range(count):
        await system.context().send("worker", Work(n=n))
    print("ready", flush=True)
    await serving
    print("drained", flush=True)


if __name__ == "__main__":
    asyncio.run(serve_with_work(int(sys.argv[1])))
