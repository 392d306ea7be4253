"""The saga state machine: what to record next, given a start, a reply or the time (sans-IO).

:class:`SagaMachine` holds one :class:`~seawall.sagas.Saga` definition and
decides for any instance of it. Each decision is a list of events, already
applied to the :class:`SagaState` passed in; the caller appends them to the
instance's stream (and, if the append fails, reloads the state and asks
again). Time is the ``now`` passed in; nothing here sleeps or does I/O.

Replies are matched by the command they answer (their ``causationid``):
only a reply to an attempt of the step and phase under way counts, so a
repeated reply, or one that comes after its step was given up, changes
nothing.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Generic, TypeVar

import msgspec

from .._messages.codec import JSON, Codec, codec_for
from .._messages.envelope import Message, to_headers
from .._messages.ids import uuid7
from .._messages.payload import Payload, schema_uri
from .._runtime.replies import Done, Failure
from ._definition import Saga, Step
from ._events import (
    AttemptTimedOut,
    CommandSent,
    Compensating,
    Phase,
    ReplyReceived,
    SagaCompleted,
    SagaEvent,
    SagaRejected,
    SagaStarted,
    SagaTimedOut,
    StepCompensated,
    StepDone,
    StepFailed,
)
from ._state import SagaState

__all__ = ["SagaMachine"]

D = TypeVar("D", bound=msgspec.Struct)


class _Decision:
    """Events decided for one instance, applied to its state as they are made."""

    def __init__(self, state: SagaState, now: float) -> None:
        self.state, self.now, self.events = state, now, list[SagaEvent]()

    def __call__(self, event: SagaEvent) -> None:
        self.state.apply(event, self.now)
        self.events.append(event)


class SagaMachine(Generic[D]):
    """Decides for every instance of ``saga``; commands name ``source`` and ask replies to
    ``replies`` (the runner's reply channel)."""

    def __init__(self, saga: Saga[D], *, source: str, replies: str, codec: Codec = JSON) -> None:
        self.saga = saga
        self.source = source
        self.replies = replies
        self.codec = codec

    def data(self, state: SagaState) -> D:
        """The instance's data, decoded."""
        return msgspec.json.decode(state.data, type=self.saga.data)

    # -- inputs ---------------------------------------------------------------------------

    def start(self, id: str, data: D, now: float) -> tuple[SagaState, list[SagaEvent]]:
        """A new instance: its state and its first events (started, first command...)."""
        state = SagaState()
        emit = _Decision(state, now)
        deadline = None if self.saga.timeout is None else now + self.saga.timeout
        emit(
            SagaStarted(
                saga=self.saga.name,
                id=id,
                data=msgspec.json.encode(data),
                deadline=deadline,
                source=self.source,
            )
        )
        self._advance(emit)
        return state, emit.events

    def on_reply(self, state: SagaState, reply: Message, now: float) -> list[SagaEvent]:
        """A reply arrived; the events it causes (none for a repeat or a late one)."""
        attempt = state.pending.get(reply.causationid or "")
        if state.finished or attempt is None:
            return []
        emit = _Decision(state, now)
        step = self.saga.steps[state.current]
        if state.phase == "compensate":
            self._compensation_reply(emit, step, attempt, reply)
        else:
            self._forward_reply(emit, step, attempt, reply)
        return emit.events

    def on_time(self, state: SagaState, now: float) -> list[SagaEvent]:
        """The clock reached ``now``: the timeouts and retries that are due."""
        if state.finished:
            return []
        emit = _Decision(state, now)
        if self._saga_expired(state, now):
            emit(SagaTimedOut(step=state.step))
            self._fail(emit, f"saga timed out after {self.saga.timeout} s", state.attempt > 0)
        elif state.expires is not None and now >= state.expires:
            self._attempt_expired(emit)
        elif state.retry_at is not None and now >= state.retry_at:
            self._send(emit, state.attempt + 1)
        return emit.events

    def due(self, state: SagaState) -> float | None:
        """When :meth:`on_time` has something to do next (None: only a reply can move it)."""
        if state.finished:
            return None
        times = [t for t in (state.expires, state.retry_at) if t is not None]
        if self._deadline_applies(state) and state.deadline is not None:
            times.append(state.deadline)
        return min(times, default=None)

    # -- decisions ------------------------------------------------------------------------

    def _advance(self, emit: _Decision) -> None:
        state, steps = emit.state, self.saga.steps
        if state.status == "running":
            while state.step < len(steps):
                step = steps[state.step]
                if step.send is not None:
                    self._send(emit, 1)
                    return
                emit(StepDone(step=state.step, name=step.name))
            emit(SagaCompleted())
        elif state.status == "compensating":
            if state.to_compensate:
                self._send(emit, 1)
            else:
                emit(SagaRejected(reason=state.reason))

    def _forward_reply(self, emit: _Decision, step: Step[D], attempt: int, reply: Message) -> None:
        state = emit.state
        outcome, reason = self._judge(step, reply, state)
        if outcome == "retry" and (step.retriable or state.attempt < step.retry.max_attempts):
            retry_at = emit.now + step.retry.backoff(state.attempt)
            emit(self._received(state, attempt, reply, "retry", reason, retry_at))
            return
        if outcome == "ok":
            emit(self._received(state, attempt, reply, "ok", reason))
            emit(StepDone(step=state.step, name=step.name))
            self._advance(emit)
            return
        emit(self._received(state, attempt, reply, "failed", reason))
        if outcome == "retry":  # retried out: the action may have happened, so undo it too
            self._fail(emit, f"{step.name}: {reason} after {state.attempt} attempts", True)
        else:  # a domain failure: the action did not happen
            self._fail(emit, reason, False)

    def _compensation_reply(
        self, emit: _Decision, step: Step[D], attempt: int, reply: Message
    ) -> None:
        state = emit.state
        if reply.type == Failure.type_name:
            retry_at = emit.now + step.retry.backoff(attempt)
            reason = _failure_text(reply)
            emit(self._received(state, attempt, reply, "retry", reason, retry_at))
            return
        emit(self._received(state, attempt, reply, "ok", ""))
        emit(StepCompensated(step=state.current, name=step.name))
        self._advance(emit)

    def _judge(self, step: Step[D], reply: Message, state: SagaState) -> tuple[str, str]:
        """``ok``, ``failed`` (a domain failure) or ``retry``, and a reason."""
        if reply.type == Failure.type_name:
            failure = codec_for(reply.datacontenttype).decode(reply.data, Failure)
            if failure.error_type in step.fails_on:
                return "failed", f"{failure.service}: {failure.error_type}: {failure.message}"
            if failure.error_type == "DeadlineExceeded":  # the participant's way of "no reply"
                return "retry", "no reply"
            return "retry", f"{failure.error_type} from {failure.service}"
        if any(reply.type == cls.type_name for cls in step.failures):
            return "failed", reply.type
        payload: Payload | None = None
        if reply.type != Done.type_name:
            cls = next((c for c in step.replies if c.type_name == reply.type), None)
            if cls is None and step.replies:
                names = [c.type_name for c in step.replies]
                return "retry", f"unexpected reply {reply.type} (expected {names})"
            payload = None if cls is None else self._decode(reply, cls)
        reason = None if step.check is None else step.check(self.data(state), payload)
        return ("ok", "") if reason is None else ("failed", reason)

    def _decode(self, reply: Message, cls: type[Payload]) -> Payload:
        return codec_for(reply.datacontenttype).decode(reply.data, cls)

    def _attempt_expired(self, emit: _Decision) -> None:
        state = emit.state
        step = self.saga.steps[state.current]
        forever = state.phase == "compensate" or step.retriable
        if not forever and state.attempt >= step.retry.max_attempts:
            emit(
                AttemptTimedOut(
                    step=state.current, phase=state.phase, attempt=state.attempt, retry_at=None
                )
            )
            self._fail(emit, f"{step.name}: no reply after {state.attempt} attempts", True)
            return
        retry_at = emit.now + step.retry.backoff(state.attempt)
        emit(
            AttemptTimedOut(
                step=state.current, phase=state.phase, attempt=state.attempt, retry_at=retry_at
            )
        )

    def _fail(self, emit: _Decision, reason: str, maybe_done: bool) -> None:
        """The forward path ends here: compensate what completed (and this step if it
        may have taken effect), last first."""
        state, steps = emit.state, self.saga.steps
        if state.step < len(steps):
            step = steps[state.step]
            emit(StepFailed(step=state.step, name=step.name, reason=reason, compensate=maybe_done))
        undo = [i for i in reversed(state.done) if steps[i].compensate is not None]
        emit(Compensating(reason=reason, steps=undo))
        self._advance(emit)

    def _send(self, emit: _Decision, attempt: int) -> None:
        state = emit.state
        index = state.current
        step = self.saga.steps[index]
        data = self.data(state)
        if state.status == "compensating":
            assert step.compensate is not None
            command, channel = step.compensate(data, state.reason), step.compensation_channel
        else:
            assert step.send is not None
            assert step.to is not None
            command, channel = step.send(data), step.to
        phase: Phase = "compensate" if state.status == "compensating" else "forward"
        expires = emit.now + step.timeout
        message = self._message(state, command, emit.now, expires)
        emit(
            CommandSent(
                step=index,
                name=step.name,
                phase=phase,
                attempt=attempt,
                message_id=message.id,
                channel=channel,
                command=command.type_name,
                headers=to_headers(message),
                body=message.data,
                expires=expires,
            )
        )

    def _message(self, state: SagaState, command: Payload, now: float, expires: float) -> Message:
        return Message(
            id=uuid7(),
            type=command.type_name,
            source=self.source,
            time=datetime.fromtimestamp(now, UTC),
            data=self.codec.encode(command),
            kind="command",
            datacontenttype=self.codec.content_type,
            dataschema=schema_uri(type(command)),
            subject=state.id,
            correlationid=state.stream,
            replyto=self.replies,
            partitionkey=state.id,
            deadline=datetime.fromtimestamp(expires, UTC),
        )

    def _received(
        self,
        state: SagaState,
        attempt: int,
        reply: Message,
        outcome: Any,
        reason: str,
        retry_at: float | None = None,
    ) -> ReplyReceived:
        return ReplyReceived(
            step=state.current,
            phase=state.phase,
            attempt=attempt,
            reply_id=reply.id,
            reply_type=reply.type,
            outcome=outcome,
            reason=reason,
            body=reply.data,
            retry_at=retry_at,
        )

    def _saga_expired(self, state: SagaState, now: float) -> bool:
        return (
            self._deadline_applies(state) and state.deadline is not None and now >= state.deadline
        )

    def _deadline_applies(self, state: SagaState) -> bool:
        """The saga's timeout counts while it goes forward, until a retriable step."""
        if state.status != "running" or state.step >= len(self.saga.steps):
            return False
        return not self.saga.steps[state.step].retriable


def _failure_text(reply: Message) -> str:
    failure = codec_for(reply.datacontenttype).decode(reply.data, Failure)
    return f"{failure.service}: {failure.error_type}: {failure.message}"
