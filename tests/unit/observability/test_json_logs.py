"""JSON log lines carry the fields of the message being handled; W3C traceparent text."""

from __future__ import annotations

import json
import logging

import pytest

from seawall import Command, RetryPolicy, Service
from seawall.observability.logs import JsonFormatter, LogContext
from seawall.observability.traceparent import format_traceparent, parse_traceparent, trace_id_of
from seawall.testing import TestSystem

TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


class Job(Command, frozen=True):
    n: int


class Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.setFormatter(JsonFormatter())
        self.lines: list[dict[str, object]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(json.loads(self.format(record)))


@pytest.fixture
def collected() -> object:
    handler = Collect()
    root = logging.getLogger()
    root.addHandler(handler)
    old = root.level
    root.setLevel(logging.INFO)
    yield handler
    root.removeHandler(handler)
    root.setLevel(old)


async def test_lines_inside_a_handler_and_the_dispatchers_carry_the_message(
    collected: Collect,
) -> None:
    svc = Service("logger", retry=RetryPolicy(max_attempts=2, initial_backoff=0.01))
    log = logging.getLogger("app")

    @svc.command
    async def job(cmd: Job) -> None:
        log.info("working on %d", cmd.n)
        raise ValueError("always")

    ts = TestSystem(svc, raise_handler_errors=False)
    ts.system.use(LogContext())
    async with ts:
        await ts.context().send("logger", Job(n=7))
        await ts.settle()
    mine = [line for line in collected.lines if line["logger"] == "app"]
    assert mine[0]["message"] == "working on 7"
    assert mine[0]["message_type"] == Job.type_name
    assert mine[0]["channel"] == "logger"
    assert mine[0]["group"] == "logger"
    assert mine[0]["handler"] == "logger.job"
    assert [line["attempt"] for line in mine] == [1, 2]
    retry = next(line for line in collected.lines if "retrying" in str(line["message"]))
    assert retry["message_id"] == mine[0]["message_id"]
    assert retry["level"] == "INFO"
    dead = next(line for line in collected.lines if "sent to logger.dlq" in str(line["message"]))
    assert dead["attempt"] == 2


def test_a_line_outside_handlers_has_only_its_own_fields() -> None:
    record = logging.LogRecord("x", logging.ERROR, "", 0, "boom %s", ("!",), None)
    record.traceparent = TRACEPARENT
    line = json.loads(JsonFormatter().format(record))
    assert line["message"] == "boom !"
    assert line["trace_id"] == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert "traceparent" not in line


def test_traceparent_round_trip_and_rejects() -> None:
    parsed = parse_traceparent(TRACEPARENT)
    assert parsed is not None
    assert format_traceparent(*parsed) == TRACEPARENT
    assert trace_id_of(TRACEPARENT) == "4bf92f3577b34da6a3ce929d0e0e4736"
    for bad in (
        None,
        "",
        TRACEPARENT.upper(),
        "01" + TRACEPARENT[2:],
        "00-" + "0" * 32 + TRACEPARENT[35:],
    ):
        assert parse_traceparent(bad) is None
