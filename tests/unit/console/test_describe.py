"""A dead letter as an operator reads it, and what a redrive sends back."""

from __future__ import annotations

from seawall import Command, Message
from seawall._messages.envelope import DLQ_HEADERS, DLQ_REASON, REDRIVE_OF
from seawall._messages.payload import TypeRegistry
from seawall._transport.dedupe import dedupe_key
from seawall.console import DeadLetter, Filter
from seawall.console.describe import describe


class Refund(Command, frozen=True):
    type_name = "describe_test.Refund"

    amount: int


def dead(data: bytes, **headers: str) -> DeadLetter:
    marks = dict(
        zip(DLQ_HEADERS, ("handler-error", "ValueError: no", "3", "pay", "pay", ""), strict=True)
    )
    message = Message(
        id="m-1",
        type=Refund.type_name,
        source="test",
        kind="command",
        data=data,
        headers={**marks, "x-tenant": "t-9", **headers},
    )
    return DeadLetter("pay.dlq", message)


def test_the_body_decodes_with_the_class_of_its_type_when_known_else_shows_as_it_is() -> None:
    registry = TypeRegistry()
    registry.register(Refund)
    known = describe(dead(b'{"amount": 250}'), registry)
    assert (known["body_as"], known["body"]) == ("decoded", {"amount": 250})
    assert known["reason"] == "handler-error"
    assert known["attempts"] == 3
    assert known["headers"] == {"x-tenant": "t-9"}  # dead-letter headers shown on their own
    assert known["envelope"]["id"] == "m-1"
    broken = describe(dead(b'{"amount": "lots"}'), registry)
    assert (broken["body_as"], broken["body"]) == ("json", {"amount": "lots"})
    truncated = describe(dead(b'{"amount": 2'))
    assert (truncated["body_as"], truncated["body"]) == ("text", '{"amount": 2')


def test_a_redrive_keeps_the_id_drops_the_dead_letter_marks_and_names_the_dead_letter() -> None:
    letter = dead(b'{"amount": 1}')
    again = letter.redriven()
    assert again.id == "m-1"
    assert DLQ_REASON not in again.headers
    assert again.headers == {"x-tenant": "t-9", REDRIVE_OF: letter.key}
    # brokers that drop repeats key it by the dead letter: the same redrive twice is one message
    assert dedupe_key(again) == f"m-1.redrive.{letter.key}"
    assert dead(b'{"amount": 2}').key != letter.key  # same id, another dead letter


def test_filters_take_reason_type_and_ids_or_keys() -> None:
    letter = dead(b"{}")
    assert Filter()(letter)
    assert Filter(reason="handler-error", type=Refund.type_name)(letter)
    assert not Filter(reason="expired")(letter)
    assert Filter(ids=frozenset({"m-1"}))(letter)
    assert Filter(ids=frozenset({letter.key}))(letter)
    assert not Filter(ids=frozenset({"m-2"}))(letter)
