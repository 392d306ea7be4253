"""``request(..., returns=T)`` gives a T or raises (issue 13, item 2)."""

from __future__ import annotations

import re
from typing import Any

import pytest

from seawall import (
    Command,
    ConfigurationError,
    Document,
    RemoteError,
    Service,
    UnexpectedReply,
)
from seawall.testing import TestSystem


class Ask(Command, frozen=True):
    answer: str


class Receipt(Document, frozen=True):
    order_id: str


class Invoice(Document, frozen=True):
    order_id: str
    total: int


def answering() -> Service:
    service = Service("shop")

    @service.command
    async def ask(cmd: Ask) -> Any:
        if cmd.answer == "receipt":
            return Receipt(order_id="o-1")
        if cmd.answer == "invoice":
            return Invoice(order_id="o-1", total=5)
        if cmd.answer == "int":
            return 42
        return None

    return service


async def test_a_reply_of_the_asked_type_comes_back_typed() -> None:
    async with TestSystem(answering()) as system:
        got = await system.context().request("shop", Ask(answer="receipt"), returns=Receipt)
    assert got == Receipt(order_id="o-1")


@pytest.mark.parametrize(
    ("answer", "words"),
    [
        ("invoice", "is Invoice, not the Receipt asked for"),
        ("none", "is no payload (the handler returned None), not the Receipt asked for"),
    ],
)
async def test_a_reply_of_another_type_is_refused(answer: str, words: str) -> None:
    async with TestSystem(answering()) as system:
        with pytest.raises(UnexpectedReply, match=re.escape(words)):
            await system.context().request("shop", Ask(answer=answer), returns=Receipt)


async def test_a_handler_returning_a_non_payload_fails_the_request_clearly() -> None:
    async with TestSystem(answering(), raise_handler_errors=False) as system:
        with pytest.raises(RemoteError, match=r"TypeError: .*returned a int; return a Command"):
            await system.context().request("shop", Ask(answer="int"))


def test_a_handler_annotated_to_return_a_non_payload_is_refused_at_once() -> None:
    service = Service("shop")
    with pytest.raises(ConfigurationError, match="annotated to return int"):

        @service.command
        async def ask(cmd: Ask) -> int:
            return 42
