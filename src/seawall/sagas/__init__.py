"""Orchestration sagas: a multi-service flow with compensations, durable in an event store.

A saga is a sequence of local transactions in several services, each step a
command sent to a participant and a reply back, so that a failure part-way
undoes (compensates) what was done instead of leaving it half done. Declare
the flow once as a :class:`Saga` of :class:`Step` s and run its instances with
a :class:`SagaRunner`::

    runner = SagaRunner(store, transport, create_order, service="order")
    # in a task group: await runner.run()
    await runner.start(create_order, order.order_id, details)
    view = await runner.wait(create_order, order.order_id)   # completed or rejected

Every decision of an instance is an event in the store (started, command
sent, reply received, step done or failed, compensating, compensated,
completed or rejected, timed out), recorded *before* it has an effect: the
log is the saga's outbox. Replies come back as messages on a durable
channel, so a process killed between any two steps resumes from the store
when it starts again. :func:`status` lists the sagas of a store (``seawall
sagas status`` prints it). This package sits in the state layer, beside
:mod:`seawall.es` and :mod:`seawall.outbox`; it reaches brokers only through
the transport interface.
"""

from __future__ import annotations

from ._definition import Saga, Step
from ._events import (
    AttemptTimedOut,
    CommandSent,
    Compensating,
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
from ._log import STUCK_AFTER, SagaLog, SagaView, status
from ._machine import SagaMachine
from ._runner import SagaRunner, SagaStats
from ._state import SagaState

__all__ = [
    "AttemptTimedOut",
    "CommandSent",
    "Compensating",
    "ReplyReceived",
    "STUCK_AFTER",
    "Saga",
    "SagaCompleted",
    "SagaEvent",
    "SagaLog",
    "SagaMachine",
    "SagaRejected",
    "SagaRunner",
    "SagaStarted",
    "SagaState",
    "SagaStats",
    "SagaTimedOut",
    "SagaView",
    "Step",
    "StepCompensated",
    "StepDone",
    "StepFailed",
    "status",
]
