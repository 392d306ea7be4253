"""How a channel lies in its JetStream stream: subjects per log, the schedule subject,
consumer names, and a group's start position as a consumer deliver policy.

Sans-IO (plain values from names, numbers and nats-py's config objects); the
adapter reads and writes streams and consumers with them. For a channel whose
name gives the token ``<tok>`` (see :func:`seawall._transport.assignment.token`),
the stream ``SEAWALL_<tok>`` takes these subjects:

=================================  =========================================
``seawall.<tok>.<p>``               partition ``p`` (a channel without levels)
``seawall.<tok>.0.<level>``         priority level ``level`` (one partition)
``seawall.<tok>.scheduled``         messages published with ``not_before``,
                                    waiting for their time (:mod:`._schedule`)
=================================  =========================================

A channel declared with ``ChannelSpec(requests="direct")`` also has the
subject ``seawall.<tok>.direct``, which is *not* one of its stream's: its
requests travel there over core NATS (:mod:`._direct`). The stream says so in
the last line of its description (:data:`DIRECT_MARK`), so every process that
reads the stream back knows where to send a request.

A *log* is what a group reads in order: a partition, or a priority level. A
group has one durable consumer per log, named ``<group tok>`` (one log),
``<group tok>_p<p>`` (partitions) or ``<group tok>_l<level>`` (levels); the
channel's due messages are moved by the consumer ``_schedule``. Tokens spell
``_`` only before two hex digits, so no group's names meet these.

An *offset* on NATS is a message's stream sequence minus one: the first message
of a channel has offset 0, and since the logs of a channel share one stream,
the offsets of one log skip those of the others (they are consecutive when the
channel has a single log). A start past the last message starts at the next one
published; one below the oldest kept starts at the oldest.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from nats.js import api

from ..._exceptions import ConfigurationError
from ..._transport import FromOffsets, FromTime, Start, partition_for
from ._wire import STREAM_PREFIX

__all__ = ["DIRECT_MARK", "SCHEDULER", "Stream", "deliver_policy", "stream_subjects"]

SCHEDULED = "scheduled"
"""Last token of the subject where messages wait for their time."""
SCHEDULER = "_schedule"
"""The durable consumer that hands due messages to the movers."""
DIRECT = "direct"
"""Last token of the core NATS subject of a channel's direct requests."""
DIRECT_MARK = "\nrequests: direct"
"""Ends the description of a stream whose channel's requests travel over core NATS."""


def stream_subjects(tok: str, partitions: int, levels: int) -> list[str]:
    """Every subject of a new channel's stream: its logs', then the schedule's."""
    if levels > 1:
        logs = [f"seawall.{tok}.0.{level}" for level in range(levels)]
    else:
        logs = [f"seawall.{tok}.{p}" for p in range(partitions)]
    return [*logs, f"seawall.{tok}.{SCHEDULED}"]


@dataclass(frozen=True, slots=True)
class Stream:
    """A channel's JetStream stream, as every process reads it back from the server."""

    channel: str
    name: str
    partitions: int
    ephemeral: bool
    levels: int = 1
    """Priority levels: more than one means one partition read as a log per level."""
    scheduled: bool = True
    """Whether the stream takes the schedule subject (streams made before it did not)."""
    subjects: tuple[str, ...] = ()
    """The subject of each log, by log (made once: a publish looks one up)."""
    direct: bool = False
    """Whether requests travel over core NATS, on :attr:`direct_subject`, unstored."""

    def __post_init__(self) -> None:
        if not self.subjects:
            tok = self.name.removeprefix(STREAM_PREFIX)
            logs = stream_subjects(tok, self.partitions, self.levels)[:-1]
            object.__setattr__(self, "subjects", tuple(logs))

    @classmethod
    def read_back(
        cls,
        channel: str,
        name: str,
        subjects: Sequence[str],
        *,
        ephemeral: bool,
        description: str | None = None,
    ) -> Stream:
        """The layout a stream's subjects and description describe (see the module docstring)."""
        prefix = f"seawall.{name.removeprefix(STREAM_PREFIX)}."
        rest = [s.removeprefix(prefix) for s in subjects]
        levels = sum(1 for r in rest if r.startswith("0."))
        partitions = sum(1 for r in rest if r.isdigit())
        return cls(
            channel=channel,
            name=name,
            partitions=max(partitions, 1),
            ephemeral=ephemeral,
            levels=max(levels, 1),
            scheduled=SCHEDULED in rest,
            direct=(description or "").endswith(DIRECT_MARK),
        )

    @property
    def token(self) -> str:
        return self.name.removeprefix(STREAM_PREFIX)

    @property
    def logs(self) -> int:
        """How many logs a group reads: one per partition, or one per priority level."""
        return self.levels if self.levels > 1 else self.partitions

    def subject(self, log: int) -> str:
        """The subject of one log: ``seawall.<tok>.<p>``, or ``seawall.<tok>.0.<level>``."""
        return self.subjects[log]

    @property
    def schedule(self) -> str:
        """The subject where messages published with ``not_before`` wait."""
        return f"seawall.{self.token}.{SCHEDULED}"

    @property
    def direct_subject(self) -> str:
        """The core NATS subject of the channel's direct requests (in no stream)."""
        return f"seawall.{self.token}.{DIRECT}"

    def log_for(self, key: str | None, priority: int) -> int:
        """The log a message goes to: its priority's level (clamped), or its key's partition."""
        if self.levels > 1:
            return min(max(priority, 0), self.levels - 1)
        return partition_for(key, self.partitions)

    def consumer(self, group_token: str, log: int) -> str:
        """The durable consumer of ``log`` for the group whose token is given."""
        if self.levels > 1:
            return f"{group_token}_l{log}"
        if self.partitions > 1:
            return f"{group_token}_p{log}"
        return group_token


def deliver_policy(
    stream: Stream, start: Start, log: int, last_seq: int
) -> tuple[api.DeliverPolicy, int | None, datetime | None]:
    """Where a new consumer of ``log`` starts: policy, start sequence, start time.

    ``last_seq`` is the stream's last sequence: an offset past it starts at the
    next message published, as on the other transports, instead of waiting for
    the stream's sequence to reach it.
    """
    if start == "earliest":
        return api.DeliverPolicy.ALL, None, None
    if start == "latest":
        return api.DeliverPolicy.NEW, None, None
    if isinstance(start, FromTime):
        return api.DeliverPolicy.BY_START_TIME, None, datetime.fromtimestamp(start.time, UTC)
    assert isinstance(start, FromOffsets)
    if len(start.offsets) != stream.logs:
        raise ConfigurationError(
            f"channel {stream.channel!r} has {stream.logs} logs (partitions x priority "
            f"levels) on NATS but the start position names {len(start.offsets)} offsets; give "
            "one per log"
        )
    sequence = min(max(start.offsets[log], 0) + 1, last_seq + 1)
    return api.DeliverPolicy.BY_START_SEQUENCE, sequence, None
