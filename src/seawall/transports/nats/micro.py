"""seawall instances seen by NATS tooling: ``$SRV.PING``, ``$SRV.INFO``, ``$SRV.STATS``.

NATS micro services answer three discovery requests on plain NATS subjects, for
all services (``$SRV.PING``), all instances of one (``$SRV.PING.<name>``) or one
instance (``$SRV.PING.<name>.<id>``), and the same for ``INFO`` and ``STATS``;
``nats micro ls`` and the micro clients of every NATS library read the answers.
Each seawall service instance that announces itself on the registry
(:mod:`seawall.discovery`) answers them too, in micro's JSON shapes, from its
newest announcement: the runtime hands every beat to
:meth:`NatsTransport.announced <seawall.transports.nats.NatsTransport.announced>`,
which feeds a :class:`Micro` (so the runtime never imports this adapter).

The mapping: micro's ``name`` is the seawall service name (characters micro does
not allow become ``_``), ``id`` the instance id, ``version`` the seawall
version; each subscription (channel and group) is an endpoint whose subject is
the NATS subject the channel is stored under, ``queue_group`` its group, and
whose stats are the instance's handled and failed counts and handler times
(``processing_time`` in nanoseconds, from the sampled p50 as the average).
seawall counts per instance, not per channel, so the counts are all on the
first endpoint.
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import nats.errors
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from ..._transport.assignment import token
from ...discovery import Announcement

__all__ = ["PREFIX", "Micro", "micro_name"]

PREFIX = "$SRV"
VERBS = ("PING", "INFO", "STATS")
_NOT_A_NAME = re.compile(r"[^A-Za-z0-9_-]")
_SEMVER = re.compile(r"^\d+\.\d+\.\d+")


def micro_name(service: str) -> str:
    """The micro name of a seawall service: micro allows letters, digits, ``-`` and ``_``."""
    return _NOT_A_NAME.sub("_", service)


def _version(text: str) -> str:
    found = _SEMVER.match(text)
    return found.group(0) if found else "0.0.0"


def _time(unix: float) -> str:
    moment = datetime.fromtimestamp(unix, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


class Micro:
    """Answers the micro discovery requests for this process's announced instances."""

    def __init__(self, client: Callable[[], Client]) -> None:
        self._client = client
        self._subs: list[Subscription] = []
        self._by_name: dict[str, list[Announcement]] = {}
        self._subjects: set[str] = set()

    async def update(self, announcements: Sequence[Announcement]) -> None:
        """Answer from these announcements from now on (one per instance and service)."""
        live = [a for a in announcements if not a.leaving]
        by_name: dict[str, list[Announcement]] = {}
        for a in live:
            by_name.setdefault(micro_name(a.service), []).append(a)
        self._by_name = by_name
        wanted = {f"{PREFIX}.{verb}" for verb in VERBS}
        for name, instances in by_name.items():
            for verb in VERBS:
                wanted.add(f"{PREFIX}.{verb}.{name}")
                wanted.update(f"{PREFIX}.{verb}.{name}.{a.instance}" for a in instances)
        if not live:
            await self.close()
            return
        client = self._client()
        for subject in sorted(wanted - self._subjects):
            self._subs.append(await client.subscribe(subject, cb=self._answer))
            self._subjects.add(subject)

    async def close(self) -> None:
        """Stop answering."""
        subs, self._subs = self._subs, []
        self._subjects.clear()
        for sub in subs:
            with contextlib.suppress(nats.errors.Error):
                await sub.unsubscribe()

    def answers(self, subject: str) -> list[dict[str, Any]]:
        """What the instances answer to a request on ``subject`` (one body each)."""
        parts = subject.split(".")
        if len(parts) < 2 or parts[0] != PREFIX or parts[1] not in VERBS:
            return []
        verb, name, instance = parts[1], *[*parts[2:4], "", ""][:2]
        shape = {"PING": self._ping, "INFO": self._info, "STATS": self._stats}[verb]
        return [
            shape(a)
            for micro, instances in self._by_name.items()
            if not name or micro == name
            for a in instances
            if not instance or a.instance == instance
        ]

    async def _answer(self, msg: Msg) -> None:
        if not msg.reply:
            return
        client = self._client()
        for body in self.answers(msg.subject):
            with contextlib.suppress(nats.errors.Error):
                await client.publish(msg.reply, json.dumps(body).encode())

    @staticmethod
    def _identity(a: Announcement, kind: str) -> dict[str, Any]:
        return {
            "type": f"io.nats.micro.v1.{kind}_response",
            "name": micro_name(a.service),
            "id": a.instance,
            "version": _version(a.seawall_version),
            "metadata": {
                "seawall.service": a.service,
                "seawall.system": a.system,
                "host": a.host,
                "pid": str(a.pid),
            },
        }

    def _ping(self, a: Announcement) -> dict[str, Any]:
        return self._identity(a, "ping")

    def _info(self, a: Announcement) -> dict[str, Any]:
        body = self._identity(a, "info")
        body["description"] = f"seawall service {a.service}"
        body["endpoints"] = [
            {
                "name": micro_name(h.channel),
                "subject": f"seawall.{token(h.channel)}.>",
                "queue_group": h.group,
                "metadata": {"channel": h.channel, "types": ", ".join(h.types)},
            }
            for h in a.handles
        ]
        return body

    def _stats(self, a: Announcement) -> dict[str, Any]:
        body = self._identity(a, "stats")
        body["started"] = _time(a.started_at)
        average = int(a.handler_p50_ms * 1_000_000)
        body["endpoints"] = [
            {
                "name": micro_name(h.channel),
                "subject": f"seawall.{token(h.channel)}.>",
                "queue_group": h.group,
                "num_requests": a.handled if first else 0,
                "num_errors": a.failed if first else 0,
                "last_error": "",
                "processing_time": average * a.handled if first else 0,
                "average_processing_time": average if first else 0,
                "data": {"in_flight": a.in_flight, "handler_p99_ms": a.handler_p99_ms},
            }
            for first, h in zip([True, *[False] * len(a.handles)], a.handles, strict=False)
        ]
        return body
