"""Commands to a running ``seawall up``: scale a service, restart it rolling.

Part of the edges layer. While it runs, ``seawall up`` serves a unix socket
(:class:`Control`) and writes where it is, with the broker's address for
clients outside the system, to ``<state>/up.json`` (the run file), so that
``seawall scale``, ``seawall restart --rolling`` and ``seawall ps`` started in
the system's directory find it. The protocol is one JSON object per line each
way: ``{"command": "scale", "service": S, "instances": N}`` or
``{"command": "restart", "service": S | null}``; the answer is ``{"ok": true,
"said": TEXT}`` or ``{"ok": false, "error": TEXT}``.

* **Scale** to N: new instances are started (with the next free numbers) and
  the call returns once they have all subscribed; surplus instances, the newest
  first, are stopped the graceful way (SIGTERM: stop intake, finish in-flight
  work, hand back what has not started) and not started again.
* **Rolling restart**: for each running instance of the service (of every
  service, without one), one at a time: drain and stop its process (SIGTERM),
  start a new process as the same instance, and wait until it has subscribed.
  The instance keeps its name (``SEAWALL_UP_INSTANCE``), so whatever a service
  ties to it (a per-instance channel, the instance that runs a relay, its files)
  carries over, and its counters go on from where they were. Nothing is lost:
  what the old process hands back, and what arrives while no process of a
  single-instance service runs, waits in the channel.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import shutil
import tempfile
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from .._exceptions import ConfigurationError, ServiceError
from .processes import Instance, Up

__all__ = ["RUN_FILE", "Control", "ask", "running_broker"]

log = logging.getLogger("seawall.up")

RUN_FILE = "up.json"
"""In the state directory while ``seawall up`` runs: its pid, control socket and broker."""

READY_TIMEOUT = 60.0
"""Seconds a new instance may take to subscribe before a scale or restart gives up."""


class Control:
    """Serves a running :class:`Up`'s control socket and keeps its run file."""

    def __init__(self, up: Up) -> None:
        self.up = up
        self._dir = ""
        self.path = ""
        self._server: asyncio.AbstractServer | None = None
        self._lock = asyncio.Lock()  # one command at a time

    @property
    def run_file(self) -> Path:
        return self.up.config.state_dir / RUN_FILE

    async def __aenter__(self) -> Self:
        self._dir = tempfile.mkdtemp(prefix="seawall-ctl-")  # short: unix paths are limited
        self.path = os.path.join(self._dir, "control.sock")
        self._server = await asyncio.start_unix_server(self._serve, path=self.path)
        broker = self.up.listen_url or self.up.transport_url
        record = {"pid": os.getpid(), "control": self.path, "transport": broker}
        self.run_file.parent.mkdir(parents=True, exist_ok=True)
        self.run_file.write_text(json.dumps(record))
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        with contextlib.suppress(OSError):
            if json.loads(self.run_file.read_text()).get("pid") == os.getpid():
                self.run_file.unlink()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        shutil.rmtree(self._dir, ignore_errors=True)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = await reader.readline()
            try:
                said = await self.handle(json.loads(line))
                answer: dict[str, Any] = {"ok": True, "said": said}
            except (ServiceError, ConfigurationError, ValueError, KeyError, TypeError) as exc:
                answer = {"ok": False, "error": str(exc)}
            writer.write(json.dumps(answer).encode() + b"\n")
            await writer.drain()
        finally:
            writer.close()

    async def handle(self, request: dict[str, Any]) -> str:
        """Carry out one command; the sentence to answer with."""
        command = request.get("command")
        async with self._lock:
            if command == "scale":
                return await self.scale(str(request["service"]), int(request["instances"]))
            if command == "restart":
                service = request.get("service")
                return await self.restart(None if service is None else str(service))
        raise ValueError(f"unknown command {command!r}; the commands are scale and restart")

    def _running(self, service: str) -> list[Instance]:
        if service not in {spec.name for spec in self.up.config.services}:
            names = ", ".join(spec.name for spec in self.up.config.services)
            raise ConfigurationError(f"no service {service!r} in this system; it has {names}")
        return [i for i in self.up.instances if i.service == service and not i.retired]

    async def scale(self, service: str, count: int) -> str:
        """Run ``count`` instances of ``service``: start new ones or retire the newest."""
        if count < 0:
            raise ConfigurationError(f"cannot scale {service} to {count} instances; give 0 or more")
        running = self._running(service)
        started = [self._start(service) for _ in range(count - len(running))]
        await self._ready(started)
        surplus = sorted(running, key=lambda i: i.index)[count:]
        await asyncio.gather(*(self._retire(i) for i in surplus))
        return f"{service}: {count} instance{'s' * (count != 1)} (was {len(running)})"

    async def restart(self, service: str | None) -> str:
        """Replace every instance of ``service`` (or of every service), one at a time."""
        names = [s.name for s in self.up.config.services] if service is None else [service]
        replaced = 0
        for name in names:
            for instance in self._running(name):
                await self._cycle(instance)
                replaced += 1
        return f"restarted {replaced} instance{'s' * (replaced != 1)} of {', '.join(names)}"

    def _start(self, service: str) -> Instance:
        up = self.up
        index = 1 + max((i.index for i in up.instances if i.service == service), default=0)
        instance = Instance(service, index)
        up.instances.append(instance)
        group = up._group  # the Up's own task group: the instance is supervised like the others
        assert group is not None
        group.create_task(up._keep(instance), name=f"up/{instance.name}")
        log.info("started %s", instance.name)
        return instance

    async def _cycle(self, instance: Instance) -> None:
        """Drain the instance's process and wait until the next one runs."""
        process = instance.process
        if process is None or process.returncode is not None:
            await self._ready([instance])  # between processes already: wait for the next
            return
        instance.cycling = True
        instance.state = "stopping"
        await self.up._terminate(process, instance.name)
        deadline = asyncio.get_running_loop().time() + READY_TIMEOUT
        while instance.pid == process.pid:  # its keeper starts the next one
            if asyncio.get_running_loop().time() > deadline:
                raise ServiceError(f"{instance.name} was not started again")
            await asyncio.sleep(0.05)
        await self._ready([instance])
        log.info("restarted %s", instance.name)

    async def _ready(self, instances: list[Instance]) -> None:
        deadline = asyncio.get_running_loop().time() + READY_TIMEOUT
        while not all(i.state == "running" for i in self.up.refresh() if i in instances):
            if asyncio.get_running_loop().time() > deadline:
                late = [i.name for i in instances if i.state != "running"]
                raise ServiceError(f"{late} did not subscribe within {READY_TIMEOUT:g} s")
            if any(i.state == "failed" for i in instances):
                raise ServiceError(f"{[i.name for i in instances]} failed to start")
            await asyncio.sleep(0.05)

    async def _retire(self, instance: Instance) -> None:
        instance.retired = True
        instance.state = "stopping"
        process = instance.process
        if process is not None:
            await self.up._terminate(process, instance.name)
        self.up.instances.remove(instance)
        log.info("stopped %s", instance.name)


def _record(state_dir: Path) -> dict[str, Any] | None:
    try:
        record = json.loads((state_dir / RUN_FILE).read_text())
    except (OSError, ValueError):
        return None
    try:
        os.kill(int(record["pid"]), 0)
    except (OSError, KeyError, ValueError):
        return None  # left by a seawall up that was killed
    return record if isinstance(record, dict) else None


def running_broker(state_dir: Path) -> str | None:
    """The broker address of the ``seawall up`` running on ``state_dir``, if one runs."""
    record = _record(state_dir)
    return None if record is None else str(record["transport"])


async def ask(state_dir: Path, request: dict[str, Any], *, timeout: float = 600.0) -> str:
    """Send one command to the ``seawall up`` running on ``state_dir``; its answer."""
    record = _record(state_dir)
    if record is None:
        raise ServiceError(
            f"no seawall up is running on {state_dir} (no live {RUN_FILE} there); start "
            "it with seawall up, in the directory of its seawall.toml"
        )
    reader, writer = await asyncio.open_unix_connection(str(record["control"]))
    try:
        writer.write(json.dumps(request).encode() + b"\n")
        await writer.drain()
        async with asyncio.timeout(timeout):
            line = await reader.readline()
    finally:
        writer.close()
    answer = json.loads(line)
    if not answer.get("ok"):
        raise ServiceError(str(answer.get("error")))
    return str(answer["said"])
