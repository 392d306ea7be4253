"""The reply table: matching by causation id, counts, expiry of forgotten requests."""

from __future__ import annotations

from seawall import Message
from seawall._runtime.replies import ReplyTable


def reply_to(request_id: str, n: int) -> Message:
    return Message(id=f"r{n}", type="t", source="s", causationid=request_id)


async def test_one_reply_resolves_a_request() -> None:
    table = ReplyTable()
    future = table.expect("q1", 1, deadline=10.0, now=0.0)
    assert table.deliver(reply_to("q1", 1))
    assert [m.id for m in future.result()] == ["r1"]
    assert len(table) == 0
    assert not table.deliver(reply_to("q1", 2))  # late duplicate: nobody waits


async def test_gather_collects_until_count_and_forget_returns_partial() -> None:
    table = ReplyTable()
    future = table.expect("q", 3, deadline=10.0, now=0.0)
    table.deliver(reply_to("q", 1))
    table.deliver(reply_to("q", 2))
    assert not future.done()
    assert [m.id for m in table.forget("q")] == ["r1", "r2"]
    assert table.forget("q") == []


async def test_expired_entries_are_dropped_on_the_next_request() -> None:
    table = ReplyTable()
    abandoned = table.expect("old", 1, deadline=5.0, now=0.0)
    table.expect("young", 1, deadline=50.0, now=1.0)
    assert len(table) == 2
    table.expect("new", 1, deadline=60.0, now=6.0)
    assert not abandoned.done()  # left to its waiter's own deadline timer
    assert len(table) == 2  # "old" gone; "young" and "new" still wait
    assert not table.deliver(reply_to("old", 1))


async def test_answered_requests_do_not_pile_up_in_the_expiry_heap() -> None:
    table = ReplyTable()
    for n in range(10_000):
        table.expect(f"q{n}", 1, deadline=1e9, now=0.0)  # long deadlines, all answered
        table.deliver(reply_to(f"q{n}", n))
    assert len(table) == 0
    assert len(table._expiry) <= 1024 + 2
