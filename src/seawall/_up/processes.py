"""``seawall up``: a system of OS processes, one per service instance, supervised.

Part of the edges layer. :class:`Up` starts the embedded broker server
(``seawall broker`` on a unix socket, and on the file's ``listen`` address for
clients outside the system, unless the configuration names another transport
such as NATS), then every instance of every service as its own process
(:mod:`seawall._up.child`), all on the same transport. Each child runs in a
process group of its own, so a Ctrl-C on the terminal reaches ``seawall up``
alone, which stops the children in order (the broker last). Supervision is
one-for-one at the OS level: a process that exits on its own is started again
after the backoff of a :class:`~seawall._runtime.supervisor.RestartTracker` (the same
sans-IO policy the in-process supervisor uses), and :attr:`Up.notify` is told,
with the last lines of its log (:mod:`seawall._up.exits`); an instance that
crashes more often than the :class:`~seawall.RestartIntensity` allows is given
up on, and one whose target does not load stops the system at once (restarts
cannot help); either way :attr:`Up.gave_up` is set so the owner can stop the
system, and :attr:`Up.failure` says why. :meth:`Up.kill` ends everything at
once (a second Ctrl-C). Leaving ``async with`` (or :meth:`Up.stop`) stops
gracefully: SIGTERM to every service process, which drains; SIGKILL to those
still running after the grace period; the broker last, the same way. The
embedded broker is supervised like the services: if it dies it is started again
on the same data and socket, and the services' links reconnect. Every child
holds a :class:`~seawall._up.lifeline.Lifeline` to the supervisor, so if the supervisor
dies, even by SIGKILL, the children stop the way SIGTERM stops them instead of
living on as orphans. Children write their counters to status files (see
:mod:`seawall._up.child`) that :meth:`Up.instances` reads back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import signal
import socket
import sys
import tempfile
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Literal, Self

import msgspec

from .._clock import Clock, SystemClock
from .._exceptions import ServiceError, SupervisorGaveUp
from .._messages.ids import uuid7
from .._runtime.supervisor import RestartTracker
from .._transport.options import option_text
from ..observability.metrics import Endpoint, ended, merge
from .config import ServiceSpec, UpConfig
from .exits import EXIT_UNLOADABLE, describe_status, log_tail, quoted
from .lifeline import Lifeline

__all__ = ["KILL_MARGIN", "Instance", "InstanceReport", "Up", "write_report"]

log = logging.getLogger("seawall.up")

State = Literal["starting", "running", "restarting", "stopping", "stopped", "failed"]

_COUNTERS = ("handled", "failed", "retried", "dead_lettered")
_READY_TIMEOUT = 30.0
KILL_MARGIN = 3.0
"""Seconds past the grace period before a process that ignores SIGTERM gets SIGKILL."""


class InstanceReport(msgspec.Struct, frozen=True):
    """What one instance tells its supervisor through its status file."""

    pid: int
    ready: bool = False
    handled: int = 0
    failed: int = 0
    retried: int = 0
    dead_lettered: int = 0
    endpoints: list[Endpoint] = msgspec.field(default_factory=list)
    """Per endpoint (service, channel, group): its counters, and timings with ``--metrics``."""


def write_report(path: Path, report: InstanceReport) -> None:
    """Replace ``path`` with ``report`` in one step (readers never see half a file)."""
    partial = path.with_suffix(".tmp")
    partial.write_bytes(msgspec.json.encode(report))
    partial.replace(path)


@dataclass(eq=False)
class Instance:
    """One OS process of a service, as the supervisor sees it."""

    service: str
    index: int
    state: State = "starting"
    restarts: int = 0
    pid: int | None = None
    exit_codes: list[int] = field(default_factory=list)
    report: InstanceReport | None = None
    """The running process's last report (its counters start at zero with each process)."""
    earlier: Counter[str] = field(default_factory=Counter)
    """Counters of this instance's earlier processes, as they last reported them."""
    earlier_endpoints: list[Endpoint] = field(default_factory=list)
    """Endpoints of this instance's earlier processes, summed, gauges at zero."""
    process: asyncio.subprocess.Process | None = field(default=None, repr=False)
    log_start: int = 0
    """Where the running process's lines start in its log file (which earlier ones share)."""
    last_words: list[str] = field(default_factory=list, repr=False)
    """The last log lines of the previous process, told of when it exited."""
    retired: bool = False  # scaled down (seawall._up.control): not started again
    cycling: bool = False
    """Its process is being stopped to be replaced (a rolling restart): the next one starts
    at once, and the stop does not count as a crash."""

    @property
    def name(self) -> str:
        return f"{self.service}-{self.index}"

    def total(self, counter: str) -> int:
        """``counter`` (handled, failed, retried, dead_lettered) over every process so far."""
        now = getattr(self.report, counter) if self.report is not None else 0
        return self.earlier[counter] + int(now)

    def endpoints(self) -> list[Endpoint]:
        """Every endpoint of this instance over every process so far (gauges: the running one)."""
        now = self.report.endpoints if self.report is not None else []
        return merge([*self.earlier_endpoints, *now])

    def _carry(self) -> None:
        if self.report is not None:
            for counter in _COUNTERS:
                self.earlier[counter] += getattr(self.report, counter)
            ended_now = [ended(e) for e in self.report.endpoints]
            self.earlier_endpoints = merge([*self.earlier_endpoints, *ended_now])
        self.report = None


class Up:
    """Runs the broker (when embedded) and every service instance as supervised processes."""

    def __init__(
        self,
        config: UpConfig,
        *,
        clock: Clock | None = None,
        log_level: str = "WARNING",
        python: str = sys.executable,
        id_prefix: str = "",
        notify: Callable[[str], object] | None = None,
        log_format: str = "text",
        metrics: bool = False,
    ) -> None:
        self.config = config
        self.clock = clock or SystemClock()
        self.log_level = log_level
        self.python = python
        self.id_prefix = id_prefix
        """Starts every process's instance id (and so its reply inbox's name)."""
        self.notify = notify or _log_notice
        """Told, in a sentence, of each process that exits on its own (with its last log lines)."""
        self.log_format = log_format
        self.metrics = metrics
        """Whether the services time their handlers for ``seawall up --metrics``."""
        self.instances: list[Instance] = [
            Instance(spec.name, n + 1) for spec in config.services for n in range(spec.instances)
        ]
        self.gave_up = asyncio.Event()
        """Set once an instance crashed past the restart intensity or its target did not load."""
        self.failure: ServiceError | None = None
        """Why the system stops on its own: a target that does not load, or a give-up."""
        self.transport_url = config.transport
        """The URL the services use: the broker's unix socket, when seawall up starts one."""
        self.listen_url = (
            f"seawall://{config.listen}" if config.embedded and config.listen else None
        )
        """Where code outside the system reaches the broker, when the file gives ``listen``."""
        self._specs = {spec.name: spec for spec in config.services}
        self._broker: asyncio.subprocess.Process | None = None
        self._sockdir: str | None = None
        self._socket = ""
        self._broker_log_start = 0
        self.broker_restarts = 0
        """How often the embedded broker was started again after it died."""
        self._group: asyncio.TaskGroup | None = None
        self._stopping = asyncio.Event()
        self._started = False
        self._lifeline: Lifeline | None = None

    @property
    def logs(self) -> Path:
        return self.config.state_dir / "logs"

    @property
    def status_dir(self) -> Path:
        return self.config.state_dir / "status"

    async def __aenter__(self) -> Self:
        if self._started:
            raise ServiceError("an Up runs once; create a new one")
        self._started = True
        for folder in (self.logs, self.status_dir):
            folder.mkdir(parents=True, exist_ok=True)
        for stale in self.status_dir.glob("*.json"):
            stale.unlink()
        self._lifeline = Lifeline()
        if self.config.embedded:
            try:
                await self._start_broker()
            except BaseException:
                self._lifeline.close()
                raise
        self._group = asyncio.TaskGroup()
        await self._group.__aenter__()
        if self._broker is not None:
            self._group.create_task(self._keep_broker(), name="up/broker")
        for instance in self.instances:
            self._group.create_task(self._keep(instance), name=f"up/{instance.name}")
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            await self.stop()
        finally:
            await self._stop_broker()  # after the services, which drain through it
            assert self._group is not None
            await self._group.__aexit__(exc_type, exc, tb)
            assert self._lifeline is not None
            self._lifeline.close()
        if self.failure is not None:
            if exc is None:
                raise self.failure
            log.error("%s", self.failure)  # not lost behind the exception that left the block

    # -- the broker -------------------------------------------------------------------------

    async def _start_broker(self) -> None:
        self._sockdir = tempfile.mkdtemp(prefix="seawall-up-")  # short: unix paths are limited
        self._socket = os.path.join(self._sockdir, "broker.sock")
        self.transport_url = f"seawall+unix://{self._socket}"
        await self._spawn_broker()

    def broker_command(self, data: Path, unix: str) -> list[str]:
        """``seawall broker`` on ``data`` and the socket ``unix``, with the file's options."""
        broker = self.config.broker
        command = [self.python, "-m", "seawall", "broker", "--data", str(data)]
        command += ["--unix", unix, "--sync", broker.sync]
        if self.config.listen is not None:
            command += ["--listen", self.config.listen]
        for name, value in broker.changes().items():
            if name != "sync":
                command += ["--option", f"{name}={option_text(value)}"]
        return command

    async def _spawn_broker(self) -> None:
        data = self.config.state_dir / "broker"
        command = self.broker_command(data, self._socket)
        command += ["--lifeline", str(self._lifeline_fd)]
        with (self.logs / "broker.log").open("ab") as sink:
            self._broker_log_start = sink.tell()
            self._broker = await asyncio.create_subprocess_exec(
                *command,
                stdout=sink,
                stderr=sink,
                env=self._env({}),
                pass_fds=[self._lifeline_fd],
                process_group=0,  # Ctrl-C is for seawall up, which stops the broker last
            )
        await self._wait_for_socket(self._socket)
        log.info("broker %d serving %s on %s", self._broker.pid, data, self._socket)

    async def _keep_broker(self) -> None:
        """Start the broker again when it dies (its data survives on disk), like a service."""
        tracker = RestartTracker(self.config.intensity)
        while True:
            assert self._broker is not None
            code = await self._broker.wait()
            if self._stopping.is_set():
                return
            delay = tracker.record_crash(self.clock.time())
            broker_log = self.logs / "broker.log"
            said = quoted(log_tail(broker_log, self._broker_log_start))
            if delay is None:
                self._fail(
                    f"seawall up gave up on the broker: it exited "
                    f"{self.config.intensity.max_restarts + 1} times within "
                    f"{self.config.intensity.within:g} s (last {describe_status(code)}); the end "
                    f"of {broker_log}:{said}\nfix the cause"
                )
                return
            self.notify(
                f"the broker (pid {self._broker.pid}) exited with {describe_status(code)}; "
                f"restart #{self.broker_restarts + 1} in {delay:.3g} s (log: {broker_log}){said}"
            )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), delay)
            if self._stopping.is_set():
                return
            await self._spawn_broker()
            self.broker_restarts += 1

    async def _wait_for_socket(self, path: str) -> None:
        assert self._broker is not None
        deadline = self.clock.time() + _READY_TIMEOUT
        while self.clock.time() < deadline:
            if self._broker.returncode is not None:
                broker_log = self.logs / "broker.log"
                raise ServiceError(
                    f"the broker exited with {describe_status(self._broker.returncode)} before "
                    f"serving; the end of {broker_log}:"
                    f"{quoted(log_tail(broker_log, self._broker_log_start))}"
                )
            if _accepts(path):
                return
            await asyncio.sleep(0.02)
        raise ServiceError(f"the broker did not listen on {path} within {_READY_TIMEOUT:g} s")

    async def _stop_broker(self) -> None:
        if self._broker is not None:
            await self._terminate(self._broker, "broker")
        if self._sockdir is not None:
            shutil.rmtree(self._sockdir, ignore_errors=True)

    # -- service processes ------------------------------------------------------------------

    @property
    def _lifeline_fd(self) -> int:
        assert self._lifeline is not None
        return self._lifeline.fd

    def _env(self, extra: dict[str, str]) -> dict[str, str]:
        # services import from where seawall up was started, as with seawall run, and
        # from the configuration file's directory
        pythonpath = [os.getcwd(), str(self.config.root), os.environ.get("PYTHONPATH", "")]
        return {
            **os.environ,
            **self.config.env,
            **extra,
            "PYTHONPATH": os.pathsep.join(p for p in pythonpath if p),
            "SEAWALL_LOG_LEVEL": self.log_level,
            "SEAWALL_LOG_FORMAT": self.log_format,
            "SEAWALL_UP_METRICS": "1" if self.metrics else "",
            "SEAWALL_UP_STATE": str(self.config.state_dir),
        }

    def status_file(self, instance: Instance) -> Path:
        return self.status_dir / f"{instance.name}.json"

    def log_file(self, instance: Instance) -> Path:
        return self.logs / f"{instance.name}.log"

    async def _spawn(self, instance: Instance, spec: ServiceSpec) -> asyncio.subprocess.Process:
        status = self.status_file(instance)
        status.unlink(missing_ok=True)
        env = self._env(
            {
                **spec.env,
                "SEAWALL_TRANSPORT": self.transport_url,
                "SEAWALL_GRACE": str(self.config.grace),
                "SEAWALL_UP_STATUS": str(status),
                "SEAWALL_UP_INSTANCE": instance.name,
                "SEAWALL_UP_ID": f"{self.id_prefix}{instance.name}-{uuid7()}",
                "SEAWALL_UP_LIFELINE": str(self._lifeline_fd),
                **({"SEAWALL_GATEWAY_LISTEN": spec.listen} if spec.listen else {}),
            }
        )
        command = [self.python, "-m", "seawall._up.child", spec.target]
        with self.log_file(instance).open("ab") as sink:
            instance.log_start = sink.tell()
            return await asyncio.create_subprocess_exec(
                *command,
                stdout=sink,
                stderr=sink,
                env=env,
                pass_fds=[self._lifeline_fd],
                process_group=0,  # Ctrl-C is for seawall up, which stops every child once
            )

    async def _keep(self, instance: Instance) -> None:
        """Run one instance and start it again each time it exits, until stopping or giving up."""
        spec = self._specs[instance.service]
        tracker = RestartTracker(self.config.intensity)
        while not (self._stopping.is_set() or instance.retired):
            instance.state = "starting"
            process = instance.process = await self._spawn(instance, spec)
            instance.pid = process.pid
            if self._stopping.is_set():  # stop() came while it was being started
                await self._terminate(process, instance.name)
            code = await process.wait()
            self._read_report(instance)  # its last words, then no more reading of that file
            instance._carry()
            self.status_file(instance).unlink(missing_ok=True)
            instance.exit_codes.append(code)
            if self._stopping.is_set() or instance.retired:
                break
            if instance.cycling:
                instance.cycling = False
                continue
            if code == EXIT_UNLOADABLE:
                self._unloadable(instance, spec)
                return
            delay = tracker.record_crash(self.clock.time())
            if delay is None:
                self._give_up(instance, code)
                return
            instance.state = "restarting"
            self._tell_exit(
                instance, process.pid, code, f"restart #{instance.restarts + 1} in {delay:.3g} s"
            )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), delay)
            if not self._stopping.is_set():
                instance.restarts += 1
        instance.state = "stopped"

    def _tell_exit(self, instance: Instance, pid: int, code: int, then: str) -> None:
        """Tell of an exit of the process's own, with the last lines it wrote to its log."""
        log_file = self.log_file(instance)
        tail = log_tail(log_file, instance.log_start)
        said = f"; its last lines ({log_file}):{quoted(tail)}" if tail else f" (log: {log_file})"
        if tail and tail == instance.last_words:
            said = f"; its last lines are those of the time before ({log_file})"
        instance.last_words = tail
        self.notify(
            f"{instance.name} (pid {pid}) exited with {describe_status(code)}; {then}{said}"
        )

    def _unloadable(self, instance: Instance, spec: ServiceSpec) -> None:
        """A target that does not load fails the system at once: restarts would not help."""
        instance.state = "failed"
        tail = log_tail(self.log_file(instance), instance.log_start)
        where = f" of {self.config.file}" if self.config.file is not None else ""
        self._stop_with(
            ServiceError(
                f"{instance.name} cannot start: its target {spec.target} does not "
                f"load:{quoted(tail)}\nfix target in [services.{spec.name}]{where}"
            )
        )

    def _give_up(self, instance: Instance, code: int) -> None:
        spec = self.config.intensity
        instance.state = "failed"
        log_file = self.log_file(instance)
        tail = log_tail(log_file, instance.log_start)
        self._fail(
            f"seawall up gave up on {instance.name}: it exited {spec.max_restarts + 1} times "
            f"within {spec.within:g} s (last {describe_status(code)}); the end of "
            f"{log_file}:{quoted(tail)}\nfix the cause"
        )

    def _fail(self, text: str) -> None:
        self._stop_with(SupervisorGaveUp(f"{text}, or allow more in [restart] of seawall.toml"))

    def _stop_with(self, failure: ServiceError) -> None:
        self.failure = self.failure or failure
        log.debug("stopping the system: %s", failure)  # raised when the system is left
        self.gave_up.set()

    def refresh(self) -> list[Instance]:
        """Read every instance's status file; a running instance that reported is 'running'."""
        for instance in self.instances:
            self._read_report(instance)
        return self.instances

    def _read_report(self, instance: Instance) -> None:
        try:
            raw = self.status_file(instance).read_bytes()
            report = msgspec.json.decode(raw, type=InstanceReport)
        except (OSError, msgspec.DecodeError):
            return
        if report.pid == instance.pid and instance.process is not None:
            instance.report = report
            if instance.state == "starting" and report.ready:
                instance.state = "running"

    async def wait_ready(self, timeout: float = _READY_TIMEOUT) -> None:
        """Return once every instance has subscribed; raise if one gives up or time runs out."""
        deadline = self.clock.time() + timeout
        while not all(i.state == "running" for i in self.refresh()):
            if self.failure is not None:
                raise self.failure
            if self.clock.time() > deadline:
                late = [i.name for i in self.instances if i.state != "running"]
                raise ServiceError(f"instances {late} not ready within {timeout:g} s")
            await asyncio.sleep(0.02)

    async def stop(self) -> None:
        """Stop every service process (SIGTERM, then SIGKILL past the grace period)."""
        self._stopping.set()
        running = [i for i in self.instances if i.process and i.process.returncode is None]
        for instance in running:
            instance.state = "stopping"
        await asyncio.gather(
            *(self._terminate(i.process, i.name) for i in running if i.process is not None)
        )

    def kill(self) -> None:
        """SIGKILL every process at once, the broker too, draining nothing (a second Ctrl-C)."""
        processes = [i.process for i in self.instances] + [self._broker]
        for process in processes:
            if process is not None and process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
        if self._sockdir is not None:
            shutil.rmtree(self._sockdir, ignore_errors=True)

    async def _terminate(self, process: asyncio.subprocess.Process, name: str) -> None:
        if process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(process.wait(), self.config.grace + KILL_MARGIN)
            except TimeoutError:
                log.warning("%s (pid %d) ignored SIGTERM; killing it", name, process.pid)
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                await process.wait()


def _log_notice(text: str) -> None:
    log.warning("%s", text)


def _accepts(path: str) -> bool:
    with socket.socket(socket.AF_UNIX) as probe:
        try:
            probe.connect(path)
        except OSError:
            return False
        return True
