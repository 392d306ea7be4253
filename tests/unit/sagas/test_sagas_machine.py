"""The saga state machine alone: decisions from starts, replies and the time (sans-IO)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import ClassVar

import msgspec
import pytest

import seawall.sagas
from seawall import Command, ConfigurationError, Document, Message, RetryPolicy, uuid7
from seawall.sagas import (
    AttemptTimedOut,
    CommandSent,
    Compensating,
    ReplyReceived,
    Saga,
    SagaCompleted,
    SagaMachine,
    SagaRejected,
    SagaState,
    SagaTimedOut,
    Step,
    StepCompensated,
    StepDone,
    StepFailed,
)

T0 = 1_700_000_000.0


class Do(Command, frozen=True):
    type_name: ClassVar[str] = "m.Do"
    what: str


class Undo(Command, frozen=True):
    type_name: ClassVar[str] = "m.Undo"
    what: str


class Answer(Document, frozen=True):
    type_name: ClassVar[str] = "m.Answer"
    ok: bool


class Data(msgspec.Struct, frozen=True):
    id: str


NO_JITTER = RetryPolicy(max_attempts=2, initial_backoff=1.0, max_backoff=4.0, jitter=0.0)


def step(name: str, **options: object) -> Step[Data]:
    return Step(  # type: ignore[misc]
        name,
        to=name,
        send=lambda d: Do(what=name),
        compensate=lambda d, why: Undo(what=name),
        replies=(Answer,),
        check=lambda d, r: None if r.ok else f"{name} said no",
        timeout=5.0,
        retry=NO_JITTER,
        **options,
    )


SAGA = Saga("m", Data, steps=[step("a"), step("b"), step("c", retriable=True)], timeout=30.0)


def machine() -> SagaMachine[Data]:
    return SagaMachine(SAGA, source="test", replies="test.saga-replies")


def reply_to(sent: CommandSent, ok: bool = True) -> Message:
    return Message(
        id=uuid7(),
        type=Answer.type_name,
        source="participant",
        time=datetime.now(UTC),
        data=msgspec.json.encode(Answer(ok=ok)),
        kind="document",
        correlationid=sent.headers["ce-correlationid"],
        causationid=sent.message_id,
    )


def last_sent(events: list[object]) -> CommandSent:
    sent = [e for e in events if isinstance(e, CommandSent)]
    assert sent, events
    return sent[-1]


def test_a_start_records_the_first_command_with_reply_channel_and_correlation() -> None:
    state, events = machine().start("s1", Data(id="s1"), T0)
    sent = last_sent(events)
    assert (sent.step, sent.name, sent.phase, sent.attempt, sent.channel) == (
        0,
        "a",
        "forward",
        1,
        "a",
    )
    assert sent.headers["ce-replyto"] == "test.saga-replies"
    assert sent.headers["ce-correlationid"] == "saga:m:s1" == state.stream
    assert sent.expires == T0 + 5.0
    assert state.deadline == T0 + 30.0


def test_replies_walk_the_steps_and_complete() -> None:
    m = machine()
    state, events = m.start("s1", Data(id="s1"), T0)
    for _ in range(3):
        events = m.on_reply(state, reply_to(last_sent(events)), T0 + 1)
    assert isinstance(events[-1], SagaCompleted)
    assert state.status == "completed"
    assert state.done == [0, 1, 2]


def test_a_domain_failure_compensates_done_steps_last_first() -> None:
    m = machine()
    state, events = m.start("s1", Data(id="s1"), T0)
    events = m.on_reply(state, reply_to(last_sent(events)), T0 + 1)  # a done
    events = m.on_reply(state, reply_to(last_sent(events), ok=False), T0 + 2)  # b says no
    assert [type(e) for e in events[:3]] == [ReplyReceived, StepFailed, Compensating]
    assert events[2] == Compensating(reason="b said no", steps=[0])  # b did not happen
    sent = last_sent(events)
    assert (sent.phase, sent.name, sent.headers["ce-type"]) == ("compensate", "a", "m.Undo")
    events = m.on_reply(state, reply_to(sent), T0 + 3)
    assert [type(e) for e in events] == [ReplyReceived, StepCompensated, SagaRejected]
    assert (state.status, state.reason, state.compensated) == ("rejected", "b said no", [0])


def test_repeated_late_and_foreign_replies_change_nothing() -> None:
    m = machine()
    state, events = m.start("s1", Data(id="s1"), T0)
    first = last_sent(events)
    assert m.on_reply(state, reply_to(first), T0 + 1)
    version = state.version
    assert m.on_reply(state, reply_to(first), T0 + 2) == []  # the same answer again
    stranger = msgspec.structs.replace(reply_to(first), causationid=uuid7())
    assert m.on_reply(state, stranger, T0 + 2) == []
    assert state.version == version


def test_a_timed_out_attempt_is_retried_after_the_backoff_then_the_step_fails() -> None:
    m = machine()
    state, events = m.start("s1", Data(id="s1"), T0)
    first = last_sent(events)
    assert m.due(state) == T0 + 5.0
    assert m.on_time(state, T0 + 4.9) == []
    events = m.on_time(state, T0 + 5.0)
    assert events == [AttemptTimedOut(step=0, phase="forward", attempt=1, retry_at=T0 + 6.0)]
    assert m.due(state) == T0 + 6.0
    second = last_sent(m.on_time(state, T0 + 6.0))
    assert (second.attempt, second.name) == (2, "a")
    assert second.message_id != first.message_id  # a new message: brokers may drop a repeat
    # the first attempt's answer, late, still answers the step; the second's then changes nothing
    assert isinstance(m.on_reply(state, reply_to(first), T0 + 7)[1], StepDone)
    assert m.on_reply(state, reply_to(second), T0 + 7) == []


def test_a_step_out_of_attempts_is_compensated_itself() -> None:
    m = machine()
    state, events = m.start("s1", Data(id="s1"), T0)
    events = m.on_reply(state, reply_to(last_sent(events)), T0)  # a done; b sent at T0
    m.on_time(state, T0 + 5)  # b attempt 1 timed out
    m.on_time(state, T0 + 6)  # b attempt 2 sent
    events = m.on_time(state, T0 + 11)  # b attempt 2 timed out: no attempts left
    failed = next(e for e in events if isinstance(e, StepFailed))
    assert failed.compensate  # its outcome is unknown
    assert next(e for e in events if isinstance(e, Compensating)).steps == [1, 0]
    assert last_sent(events).name == "b"


def test_the_saga_timeout_compensates_until_a_retriable_step() -> None:
    m = machine()
    state, events = m.start("s1", Data(id="s1"), T0)
    events = m.on_reply(state, reply_to(last_sent(events)), T0 + 1)
    events = m.on_time(state, T0 + 30.0)
    assert isinstance(events[0], SagaTimedOut)
    assert state.status == "compensating"
    # a saga past its pivot (at the retriable step) is not timed out
    m2 = machine()
    state2, events2 = m2.start("s2", Data(id="s2"), T0)
    for _ in range(2):
        events2 = m2.on_reply(state2, reply_to(last_sent(events2)), T0 + 1)
    assert m2.due(state2) == T0 + 6.0  # only the attempt's timeout, not the saga's
    assert not any(isinstance(e, SagaTimedOut) for e in m2.on_time(state2, T0 + 31))


def test_the_state_folds_back_from_the_events() -> None:
    m = machine()
    state, events = m.start("s1", Data(id="s1"), T0)
    everything = list(events)
    everything += m.on_reply(state, reply_to(last_sent(events)), T0 + 1)
    again = SagaState()
    for event in everything:
        again.apply(event, T0 + 1)
    assert (again.step, again.pending, again.done) == (state.step, state.pending, state.done)


def test_bad_definitions_are_refused_with_the_step_named() -> None:
    with pytest.raises(ConfigurationError, match="'x' sends a command but names no channel"):
        Step("x", send=lambda d: Do(what="x"))
    with pytest.raises(ConfigurationError, match="names a step twice"):
        Saga("s", Data, steps=[step("a"), step("a")])
    with pytest.raises(ConfigurationError, match="without ':'"):
        Saga("a:b", Data, steps=[step("a")])


def test_public_names_are_sorted_and_documented() -> None:
    names = seawall.sagas.__all__
    assert names == sorted(names)
    for name in names:
        obj = getattr(seawall.sagas, name)
        if isinstance(obj, type) or callable(obj):
            assert (obj.__doc__ or "").strip(), name
