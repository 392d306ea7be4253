"""The group-commit writer: acknowledgements, bad calls, laziness, back-pressure, failure."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path

import pytest

from seawall import StorageError, TransportClosed
from seawall._broker.store import DB_FILE, ChannelLayout, Entry, Store, WriteBatch
from seawall._broker.store_writer import StoreWriter

LAYOUT = ChannelLayout(partitions=1, max_messages=1000)


async def opened(path: Path, **options: object) -> StoreWriter:
    writer = StoreWriter(path, **options)  # type: ignore[arg-type]
    await writer.__aenter__()
    await writer.declare("orders", LAYOUT)
    return writer


@pytest.mark.parametrize("policy", ["always", "batch", "none"])
async def test_appends_are_committed_and_recovered(tmp_path: Path, policy: str) -> None:
    writer = await opened(tmp_path, policy=policy)
    acks = [writer.append("orders", 0, n, float(n), b"m%d" % n) for n in range(500)]
    await asyncio.gather(*acks)
    await writer.close()
    async with StoreWriter(tmp_path) as again:
        assert again.recovered.logs[("orders", 0)].end == 500
        assert again.read("orders", 0, 498, 10) == [
            Entry(498, 498.0, b"m498"),
            Entry(499, 499.0, b"m499"),
        ]


async def test_a_lone_write_commits_at_once_and_only_concurrent_writes_linger(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Commits here take 0.3 s (the real Store, slowed), so company is worth up to that long.
    write = Store.write
    slow = [0.3]

    def slowed(store: Store, batch: WriteBatch) -> None:
        time.sleep(slow[0])
        write(store, batch)

    monkeypatch.setattr(Store, "write", slowed)
    writer = await opened(tmp_path, policy="batch", window=0.3)
    started = time.monotonic()
    await writer.append("orders", 0, 0, 1.0, b"alone")
    assert time.monotonic() - started < 0.5  # nobody else writing: one commit, no wait

    await asyncio.gather(*(writer.append("orders", 0, n, 1.0, b"") for n in range(1, 51)))
    slow[0] = 0.0
    started = time.monotonic()  # the last group had company: the next one waits for more
    ack = writer.append("orders", 0, 51, 2.0, b"late")
    assert writer.read("orders", 0, 51, 10) == []  # reads see only committed entries
    await ack
    assert time.monotonic() - started >= 0.25
    assert writer.read("orders", 0, 51, 10) == [Entry(51, 2.0, b"late")]

    started = time.monotonic()  # that group was alone again: no lingering
    await writer.append("orders", 0, 52, 3.0, b"")
    assert time.monotonic() - started < 0.2
    await writer.close()


async def test_a_linger_lasts_no_longer_than_the_last_commit_took(tmp_path: Path) -> None:
    # Commits take milliseconds here: waiting the (enormous) window for company would cost
    # more than committing at once and once more for whoever comes late.
    writer = await opened(tmp_path, policy="batch", window=30.0)
    await asyncio.gather(*(writer.append("orders", 0, n, 1.0, b"") for n in range(50)))
    started = time.monotonic()  # the last group had company, but a commit is quick
    await writer.append("orders", 0, 50, 2.0, b"late")
    assert time.monotonic() - started < 5.0
    await writer.close()


async def test_a_full_group_is_committed_without_waiting_for_the_window(tmp_path: Path) -> None:
    async with StoreWriter(tmp_path, policy="batch", window=30.0, group_size=100) as writer:
        started = time.monotonic()
        acks = [writer.declare("orders", LAYOUT)]
        acks += [writer.append("orders", 0, n, 1.0, b"") for n in range(99)]
        await asyncio.gather(*acks)
        assert time.monotonic() - started < 10.0


async def test_a_group_whose_writers_are_all_back_is_committed_without_lingering(
    tmp_path: Path,
) -> None:
    # Four writers, each waiting for its acknowledgement before writing again (the
    # publishers of issue 14): once all four are queued again there is nobody left to
    # wait for, so no group waits for the (here enormous) window.
    async with StoreWriter(tmp_path, policy="batch", window=30.0) as writer:
        await writer.declare("orders", LAYOUT)
        offsets = iter(range(1000))

        async def writer_task() -> None:
            for _ in range(20):
                await writer.append("orders", 0, next(offsets), 1.0, b"")

        await asyncio.wait_for(asyncio.gather(*(writer_task() for _ in range(4))), 10.0)
        assert len(writer.read("orders", 0, 0, 100)) == 80


async def test_unsynced_appends_never_linger_for_company(tmp_path: Path) -> None:
    async with StoreWriter(tmp_path, policy="batch", window=30.0) as writer:
        await writer.declare("orders", LAYOUT)
        await asyncio.gather(*(writer.append("orders", 0, n, 1.0, b"") for n in range(50)))
        # the last group had company, but a request that needs no fsync waits for nobody
        await asyncio.wait_for(writer.append("orders", 0, 50, 1.0, b"q", fsync=False), 10.0)
        assert writer.read("orders", 0, 50, 10) == [Entry(50, 1.0, b"q")]


async def test_policy_none_lets_callers_acknowledge_before_writing(tmp_path: Path) -> None:
    async with StoreWriter(tmp_path, policy="none", window=30.0) as writer:
        assert writer.acks_before_commit
        writer.declare("orders", LAYOUT)
        committed = writer.append("orders", 0, 0, 1.0, b"early")
        await asyncio.sleep(0.05)
        assert not committed.done()  # the future still tells when it is written
        assert writer.read("orders", 0, 0, 10) == []  # not written yet
    # leaving the block closed the writer, which wrote what was queued
    with Store.open(tmp_path) as store:
        assert store.read("orders", 0, 0, 10) == [Entry(0, 1.0, b"early")]


async def test_bad_calls_fail_at_the_call_site_and_the_writer_goes_on(tmp_path: Path) -> None:
    writer = await opened(tmp_path)
    await writer.append("orders", 0, 0, 1.0, b"")
    with pytest.raises(StorageError, match=r"orders\[0\] at offset 2, but the log ends at 1"):
        writer.append("orders", 0, 2, 1.0, b"")
    with pytest.raises(StorageError, match="unknown channel 'refunds'"):
        writer.append("refunds", 0, 0, 1.0, b"")
    with pytest.raises(StorageError, match="cannot trim"):
        writer.trim("orders", 0, 5)
    with pytest.raises(StorageError, match="no scheduled message m-9"):
        writer.move_due("m-9", "orders", 0, 1, 1.0, b"")
    await writer.append("orders", 0, 1, 1.0, b"")
    await writer.close()
    with pytest.raises(TransportClosed, match="is closed"):
        writer.append("orders", 0, 2, 1.0, b"")


def positions_on_disk(path: Path) -> list[tuple[str, str, int, int]]:
    with sqlite3.connect(path / DB_FILE) as db:
        rows = db.execute("SELECT * FROM positions").fetchall()
    db.close()
    return rows


async def test_positions_and_trims_are_lazy_but_not_forgotten(tmp_path: Path) -> None:
    writer = await opened(tmp_path, lazy_window=0.2)
    await asyncio.gather(*(writer.append("orders", 0, n, 1.0, b"x") for n in range(10)))
    writer.set_position("orders", "billing", 0, 3)
    writer.set_position("orders", "billing", 0, 6)  # the latest wins
    writer.trim("orders", 0, 6)
    assert positions_on_disk(tmp_path) == []  # waiting for company …
    await asyncio.sleep(0.5)  # … but written alone after lazy_window
    assert positions_on_disk(tmp_path) == [("orders", "billing", 0, 6)]
    assert [e.offset for e in writer.read("orders", 0, 0, 100)] == [6, 7, 8, 9]
    await writer.close()


@pytest.mark.parametrize("idle", [False, True], ids=["just-after-a-commit", "idle-writer"])
async def test_a_lone_lazy_write_is_committed_within_lazy_window(
    tmp_path: Path, idle: bool
) -> None:
    # Just after a commit the writer sleeps with a deadline and is not woken for a
    # lazy write; idle, it sleeps without one and is. Either way it lands in time.
    writer = await opened(tmp_path, lazy_window=0.1)
    await writer.append("orders", 0, 0, 1.0, b"x")
    if idle:
        await asyncio.sleep(0.3)  # past lazy_window: the writer now sleeps without a deadline
    writer.set_position("orders", "billing", 0, 1)
    assert positions_on_disk(tmp_path) == []  # lazy: not at once …
    await asyncio.sleep(0.4)  # … but within lazy_window (and a commit)
    assert positions_on_disk(tmp_path) == [("orders", "billing", 0, 1)]
    await writer.close()


async def test_lazy_writes_ride_with_the_next_commit_and_close_flushes_them(tmp_path: Path) -> None:
    writer = await opened(tmp_path, lazy_window=30.0)
    writer.set_position("orders", "billing", 0, 0)
    await writer.append("orders", 0, 0, 1.0, b"x")
    assert positions_on_disk(tmp_path) == [("orders", "billing", 0, 0)]
    writer.set_position("orders", "billing", 0, 1)
    await writer.close()
    assert positions_on_disk(tmp_path) == [("orders", "billing", 0, 1)]


async def test_scheduled_messages_move_into_the_log(tmp_path: Path) -> None:
    writer = await opened(tmp_path)
    await writer.schedule("m-1", "orders", 50.0, b"later")
    await writer.close()
    async with StoreWriter(tmp_path) as again:
        (item,) = again.recovered.scheduled
        await again.move_due(item.id, item.channel, 0, 0, item.due, item.body)
        assert again.read("orders", 0, 0, 10) == [Entry(0, 50.0, b"later")]
    async with StoreWriter(tmp_path) as third:
        assert third.recovered.scheduled == []


async def test_a_full_queue_pushes_back_until_the_writer_catches_up(tmp_path: Path) -> None:
    writer = await opened(tmp_path, policy="batch", window=0.05, max_pending=4)
    acks = [writer.append("orders", 0, n, 1.0, b"") for n in range(4)]
    assert writer.full
    with pytest.raises(StorageError, match=r"4 writes queued \(max_pending\); await"):
        writer.append("orders", 0, 4, 1.0, b"")
    await writer.room()  # returns once the group of 4 is committed
    assert all(ack.done() for ack in acks)
    await writer.append("orders", 0, 4, 1.0, b"")
    await writer.close()


async def test_a_failed_write_fails_its_group_and_stops_the_writer(tmp_path: Path) -> None:
    writer = await opened(tmp_path, window=0.05, max_pending=2)
    bad = writer.append("orders", 0, 0, 1.0, object())  # type: ignore[arg-type]
    good = writer.append("orders", 0, 1, 1.0, b"")
    assert writer.full
    await asyncio.wait_for(writer.room(), 10)  # a failed writer does not leave waiters hanging
    for ack in (bad, good):  # the whole group failed: one transaction
        with pytest.raises(StorageError, match="failed while writing"):
            await ack
    with pytest.raises(StorageError, match=r"failed earlier .* restart the broker"):
        writer.append("orders", 0, 2, 1.0, b"")
    await writer.close()
    with Store.open(tmp_path) as store:  # nothing of the failed group was written
        assert "orders" in store.recover().channels
        assert store.recover().logs == {}


async def test_a_store_that_cannot_open_fails_the_writer_at_start(tmp_path: Path) -> None:
    (tmp_path / DB_FILE).write_bytes(b"garbage" * 100)
    with pytest.raises(StorageError, match="is damaged"):
        async with StoreWriter(tmp_path):
            pass


async def test_held_appends_wait_for_release_and_other_writes_release_them(
    tmp_path: Path,
) -> None:
    """hold() keeps appends on the loop until release(); a write of another kind queues
    them first, so the writer sees every write in the order made."""
    writer = await opened(tmp_path)
    writer.hold()
    held = [writer.append("orders", 0, n, 1.0, b"h%d" % n) for n in range(3)]
    await asyncio.sleep(0.05)
    assert not any(ack.done() for ack in held)  # not even queued for the writer yet
    assert writer.read("orders", 0, 0, 10) == []
    writer.release()
    await asyncio.gather(*held)
    assert [e.body for e in writer.read("orders", 0, 0, 10)] == [b"h0", b"h1", b"h2"]

    writer.hold()
    first = writer.append("orders", 0, 3, 2.0, b"before")
    await writer.schedule("later", "orders", 5.0, b"moved")  # other writes, while holding
    moved = writer.move_due("later", "orders", 0, 4, 3.0, b"moved")
    await asyncio.gather(first, moved)  # committed without release: queued in order
    writer.release()
    assert [e.body for e in writer.read("orders", 0, 3, 10)] == [b"before", b"moved"]

    writer.hold()  # positions too: the latest of each is kept until release
    writer.set_position("orders", "billing", 0, 1)
    writer.set_position("orders", "billing", 0, 2)
    writer.release()
    await writer.close()
    async with StoreWriter(tmp_path) as again:
        assert again.recovered.positions[("orders", "billing", 0)] == 2
