"""Handler registration: types from annotations, clear errors for bad handlers."""

from __future__ import annotations

from typing import Any

import pytest

from seawall import Command, ConfigurationError, Context, Document, Event, Service


class A(Command, frozen=True):
    n: int


class B(Event, frozen=True):
    n: int


class C(Event, frozen=True):
    n: int


class R(Document, frozen=True):
    n: int


def test_command_handler_is_registered_by_its_annotation() -> None:
    svc = Service("s")

    @svc.command
    async def handle(cmd: A, ctx: Context) -> R:
        return R(n=cmd.n)

    sub = svc.subscriptions[("s", "s")]
    assert sub.is_command_channel
    assert sub.handlers[A].fn is handle
    assert sub.handlers[A].returns is R
    assert sub.handlers[A].wants_context
    assert sub.versions == {"A": {"1": A}}
    assert svc.payload_types() == {A, R}


def test_union_annotation_subscribes_to_several_types() -> None:
    svc = Service("s")

    @svc.subscribe("other.events", group="g", concurrency=3)
    async def on_event(event: B | C) -> None: ...

    sub = svc.subscriptions[("other.events", "g")]
    assert set(sub.handlers) == {B, C}
    assert sub.versions == {"B": {"1": B}, "C": {"1": C}}
    assert (sub.concurrency, sub.prefetch, sub.is_command_channel) == (3, 12, False)
    assert not sub.handlers[B].wants_context


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("def h(cmd: A) -> None: ...", "must be an 'async def' function"),
        ("async def h() -> None: ...", "must take (message) or (message, ctx); it takes 0"),
        ("async def h(a: A, b: Context, c: int) -> None: ...", "it takes 3"),
        ("async def h(cmd: int) -> None: ...", "annotate its first parameter"),
        ("async def h(cmd) -> None: ...", "annotate its first parameter"),
        ("async def h(cmd: A | int) -> None: ...", "annotate its first parameter"),
        ("async def h(cmd: 'Missing') -> None: ...", "cannot resolve an annotation"),
    ],
)
def test_bad_handlers_are_refused_with_a_clear_error(source: str, message: str) -> None:
    namespace: dict[str, Any] = {"A": A, "Context": Context}
    exec(source, namespace)
    with pytest.raises(ConfigurationError, match=message.replace("(", r"\(").replace(")", r"\)")):
        Service("s").command(namespace["h"])


def test_two_handlers_for_one_type_in_one_group_are_refused() -> None:
    svc = Service("s")

    @svc.command
    async def first(cmd: A) -> None: ...

    with pytest.raises(ConfigurationError, match=r"s\.second and s\.first both handle .A."):

        @svc.command
        async def second(cmd: A) -> None: ...


@pytest.mark.parametrize("name", ["", "has space", "_private", "a:b", "a/b"])
def test_bad_service_names_are_refused(name: str) -> None:
    with pytest.raises(ConfigurationError, match="service name"):
        Service(name)


def test_prefetch_below_concurrency_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="prefetch >= concurrency"):
        Service("s", concurrency=8, prefetch=4)
