"""The synchronous store on real SQLite files: writes, reads, recovery, retention, damage."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import pytest

from seawall import StorageCorrupted, StorageError
from seawall._broker.store import (
    CHECKPOINT_BYTES,
    DB_FILE,
    INSERT_ROWS,
    PAGE_SIZE,
    WAL_RESERVE,
    ChannelLayout,
    Entry,
    LogBounds,
    Scheduled,
    Store,
    WriteBatch,
)

LAYOUT = ChannelLayout(partitions=2, max_messages=1000, max_age=60.0)


def body(offset: int) -> bytes:
    return b"b%d" % offset


def batch_of(channel: str, partition: int, start: int, count: int) -> WriteBatch:
    batch = WriteBatch()
    for offset in range(start, start + count):
        batch.append(channel, partition, offset, 100.0 + offset, body(offset))
    return batch


@pytest.fixture
def store(tmp_path: Path) -> Store:
    store = Store.open(tmp_path / "data")
    batch = WriteBatch()
    batch.declare("orders", LAYOUT)
    store.write(batch)
    return store


def test_entries_read_back_and_survive_reopening(tmp_path: Path, store: Store) -> None:
    count = INSERT_ROWS + 5  # one multi-row insert and a remainder
    store.write(batch_of("orders", 1, 0, count))
    position = WriteBatch()
    position.set_position("orders", "billing", 1, 7)
    store.write(position)
    assert store.read("orders", 1, 3, 2) == [Entry(3, 103.0, b"b3"), Entry(4, 104.0, b"b4")]
    store.close()

    with Store.open(tmp_path / "data") as again:
        recovered = again.recover()
        entries = again.read("orders", 1, 0, 10_000)
    assert recovered.channels == {"orders": LAYOUT}
    assert recovered.logs == {
        ("orders", 1): LogBounds(0, count, sum(map(len, map(body, range(count)))))
    }
    assert recovered.positions == {("orders", "billing", 1): 7}
    assert entries == [Entry(n, 100.0 + n, body(n)) for n in range(count)]


def test_reading_an_unwritten_log_or_past_the_end_gives_nothing(store: Store) -> None:
    store.write(batch_of("orders", 0, 0, 3))
    assert store.read("orders", 1, 0, 10) == []
    assert store.read("orders", 0, 3, 10) == []
    assert store.read("nowhere", 0, 0, 10) == []


def test_an_offset_gap_is_refused_and_the_whole_batch_is_not_written(store: Store) -> None:
    store.write(batch_of("orders", 0, 0, 3))
    bad = batch_of("orders", 1, 0, 2)  # valid on its own …
    bad.declare("payments", LAYOUT)
    bad.append("orders", 0, 4, 1.0, b"gap")  # … but offset 3 is skipped
    with pytest.raises(StorageError, match=r"orders\[0\] at offset 4, but the log ends at 3"):
        store.write(bad)
    recovered = store.recover()
    assert set(recovered.channels) == {"orders"}
    assert set(recovered.logs) == {("orders", 0)}
    store.write(batch_of("orders", 0, 3, 1))  # the store goes on from where it was
    assert store.recover().logs[("orders", 0)].end == 4


def test_a_gap_inside_one_batch_is_refused_when_collected() -> None:
    batch = batch_of("orders", 0, 0, 2)
    with pytest.raises(StorageError, match="does not follow offset 1"):
        batch.append("orders", 0, 5, 1.0, b"")


def test_writing_to_an_unknown_channel_is_refused(store: Store) -> None:
    with pytest.raises(StorageError, match="unknown channel 'refunds': declare it"):
        store.write(batch_of("refunds", 0, 0, 1))
    position = WriteBatch()
    position.set_position("refunds", "g", 0, 1)
    with pytest.raises(StorageError, match="unknown channel 'refunds'"):
        store.write(position)


def test_trims_drop_entries_and_their_bytes(store: Store) -> None:
    store.write(batch_of("orders", 0, 0, 20))
    trim = WriteBatch()
    trim.trim("orders", 0, 5)
    trim.trim("orders", 0, 12)  # the highest trim wins
    trim.trim("orders", 0, 8)
    store.write(trim)
    bounds = store.recover().logs[("orders", 0)]
    assert bounds == LogBounds(12, 20, sum(len(body(n)) for n in range(12, 20)))
    assert [e.offset for e in store.read("orders", 0, 0, 100)] == list(range(12, 20))
    too_far = WriteBatch()
    too_far.trim("orders", 0, 21)
    with pytest.raises(StorageError, match=r"cannot trim .* below offset 21: the log ends at 20"):
        store.write(too_far)


def test_offset_at_time_finds_the_first_entry_not_older(store: Store) -> None:
    store.write(batch_of("orders", 0, 0, 50))  # entry n has time 100 + n
    assert store.offset_at_time("orders", 0, 0.0) == 0
    assert store.offset_at_time("orders", 0, 120.0) == 20
    assert store.offset_at_time("orders", 0, 120.5) == 21
    assert store.offset_at_time("orders", 0, 1e9) == 50
    assert store.offset_at_time("orders", 1, 120.0) == 0  # empty log: its end


def test_offset_keeping_bytes_keeps_the_newest_that_fit(store: Store) -> None:
    batch = WriteBatch()
    for offset in range(10):
        batch.append("orders", 0, offset, 1.0, b"x" * 10)
    store.write(batch)
    assert store.offset_keeping_bytes("orders", 0, 1000) == 0
    assert store.offset_keeping_bytes("orders", 0, 35) == 7
    assert store.offset_keeping_bytes("orders", 0, 30) == 7
    assert store.offset_keeping_bytes("orders", 0, 0) == 10


def test_moving_a_due_message_appends_it_and_forgets_it_at_once(
    tmp_path: Path, store: Store
) -> None:
    later = WriteBatch()
    later.schedule(Scheduled("m-1", "orders", 500.0, b"delayed"))
    later.schedule(Scheduled("m-2", "orders", 400.0, b"sooner"))
    store.write(later)
    assert [s.id for s in store.recover().scheduled] == ["m-2", "m-1"]  # by due time

    move = WriteBatch()
    move.move_due("m-2", "orders", 0, 0, 400.0, b"sooner")
    store.write(move)
    again = WriteBatch()
    again.move_due("m-2", "orders", 0, 1, 400.0, b"sooner")
    with pytest.raises(StorageError, match="no scheduled message m-2"):
        store.write(again)
    store.close()
    with Store.open(tmp_path / "data") as reopened:
        recovered = reopened.recover()
        assert reopened.read("orders", 0, 0, 10) == [Entry(0, 400.0, b"sooner")]
    assert recovered.scheduled == [Scheduled("m-1", "orders", 500.0, b"delayed")]


def test_a_second_store_on_the_same_directory_is_refused(tmp_path: Path, store: Store) -> None:
    with pytest.raises(StorageError, match="in use by another broker"):
        Store.open(tmp_path / "data")
    store.close()
    Store.open(tmp_path / "data").close()


def test_a_store_from_a_newer_seawall_is_refused(tmp_path: Path, store: Store) -> None:
    store.close()
    with sqlite3.connect(tmp_path / "data" / DB_FILE) as db:
        db.execute("PRAGMA user_version=99")
    db.close()
    with pytest.raises(StorageError, match="schema version 99, newer"):
        Store.open(tmp_path / "data")


def crash_copy(store: Store, source: Path, target: Path) -> Path:
    """The files as a kill -9 would leave them: database and WAL, no checkpoint."""
    target.mkdir()
    for name in (DB_FILE, DB_FILE + "-wal"):
        shutil.copyfile(source / name, target / name)
    return target / (DB_FILE + "-wal")


def frames_end(wal: Path) -> int:
    """Where the WAL's frames end; zeros reserved past them (WAL_RESERVE) follow."""
    data = wal.read_bytes()
    salt, end, frame = data[16:24], 32, 24 + PAGE_SIZE
    while end + frame <= len(data) and data[end + 8 : end + 16] == salt:
        end += frame
    return end


def test_a_torn_last_commit_is_ignored_and_earlier_commits_kept(
    tmp_path: Path, store: Store
) -> None:
    for start in range(0, 30, 10):  # three commits of 10 entries
        store.write(batch_of("orders", 0, start, 10))
    wal = crash_copy(store, tmp_path / "data", tmp_path / "torn")
    with wal.open("r+b") as file:  # the last commit's final frame never fully reached the disk
        file.truncate(frames_end(wal) - 100)
    garbled = crash_copy(store, tmp_path / "data", tmp_path / "garbled")
    with garbled.open("r+b") as file:  # or junk after the last frame
        file.seek(frames_end(garbled))
        file.write(b"\xde\xad" * 3000)

    with Store.open(tmp_path / "torn") as torn:
        assert torn.recover().logs[("orders", 0)].end == 20
        assert [e.offset for e in torn.read("orders", 0, 0, 100)] == list(range(20))
        torn.write(batch_of("orders", 0, 20, 1))  # and it goes on from there
    with Store.open(tmp_path / "garbled") as kept:
        assert [e.offset for e in kept.read("orders", 0, 0, 100)] == list(range(30))


def test_garbage_in_the_file_header_raises_storage_corrupted(tmp_path: Path, store: Store) -> None:
    store.close()
    file = tmp_path / "data" / DB_FILE
    with file.open("r+b") as raw:
        raw.write(b"not a database at all" * 10)
    with pytest.raises(StorageCorrupted, match="Restore the data directory from a backup") as err:
        Store.open(tmp_path / "data")
    assert err.value.path == str(file)
    assert str(file) in str(err.value)


def test_garbage_in_a_data_page_raises_storage_corrupted(tmp_path: Path, store: Store) -> None:
    store.write(batch_of("orders", 0, 0, 3000))
    store.close()
    file = tmp_path / "data" / DB_FILE
    with file.open("r+b") as raw:  # overwrite pages in the middle of the entries b-tree
        raw.seek(file.stat().st_size // 2)
        raw.write(b"\xff" * 8192)
    with pytest.raises(StorageCorrupted, match=f"data file {file} is damaged"):
        Store.open(tmp_path / "data")
    with (  # without the check at open, the damage shows on the first read of it
        Store.open(tmp_path / "data", check=False) as unchecked,
        pytest.raises(StorageCorrupted, match=r"move .* away to start empty"),
    ):
        unchecked.read("orders", 0, 0, 3000)


def test_checkpoints_keep_the_wal_bounded(tmp_path: Path, store: Store) -> None:
    wal = tmp_path / "data" / (DB_FILE + "-wal")
    big = b"w" * 10_000
    offset = 0
    for _ in range(3 * CHECKPOINT_BYTES // (100 * len(big))):
        batch = WriteBatch()
        for _ in range(100):
            batch.append("orders", 0, offset, 1.0, big)
            offset += 1
        store.write(batch)
        store.checkpoint_if_due()
    assert wal.stat().st_size < 1.5 * CHECKPOINT_BYTES  # the WAL restarted after checkpoints
    assert store.recover().logs[("orders", 0)].bytes == offset * len(big)


def test_the_wal_is_reserved_on_disk_and_lone_commits_reach_a_checkpoint(
    tmp_path: Path, store: Store
) -> None:
    wal = tmp_path / "data" / (DB_FILE + "-wal")
    assert wal.stat().st_size >= WAL_RESERVE  # commits overwrite it instead of growing it
    assert wal.stat().st_blocks * 512 >= WAL_RESERVE  # written, not a sparse hole
    commits = 0
    while not store.checkpoint_if_due():  # one small entry per commit, as a lone request
        store.write(batch_of("orders", 0, commits, 1))
        commits += 1
    # each writes two pages of WAL: counted, the checkpoint comes before the WAL outgrows
    # its reserve (counting bodies alone, it came after some 800 MB)
    assert commits * 2 * PAGE_SIZE < WAL_RESERVE
    assert wal.stat().st_size < 1.5 * WAL_RESERVE


def test_deleting_a_channel_removes_all_it_holds_and_survives_reopening(
    tmp_path: Path, store: Store
) -> None:
    store.write(batch_of("orders", 0, 0, 3))
    kept = WriteBatch()
    kept.declare("kept", LAYOUT)
    kept.append("kept", 0, 0, 1.0, b"k")
    kept.set_position("kept", "billing", 0, 1)
    kept.set_position("orders", "billing", 0, 2)
    kept.schedule(Scheduled("0:late", "orders", 500.0, b"late"))
    store.write(kept)
    doomed = WriteBatch()
    doomed.delete_channel("orders")
    store.write(doomed)
    store.close()

    with Store.open(tmp_path / "data") as again:
        recovered = again.recover()
        assert list(recovered.channels) == ["kept"]
        assert list(recovered.logs) == [("kept", 0)]
        assert recovered.positions == {("kept", "billing", 0): 1}
        assert recovered.scheduled == []
        assert again.read("orders", 0, 0, 10) == []
        (count,) = again._db.execute("SELECT count(*) FROM entries").fetchone()
        assert count == 1


def test_a_channel_deleted_and_made_again_in_one_batch_keeps_only_what_came_after(
    store: Store,
) -> None:
    both = batch_of("orders", 0, 0, 2)
    both.set_position("orders", "billing", 0, 1)
    both.delete_channel("orders")  # drops the two appends and the position of this batch
    both.declare("orders", LAYOUT)
    both.append("orders", 0, 0, 7.0, b"new")
    store.write(both)
    recovered = store.recover()
    assert recovered.logs == {("orders", 0): LogBounds(0, 1, 3)}
    assert recovered.positions == {}
    assert store.read("orders", 0, 0, 10) == [Entry(0, 7.0, b"new")]


def test_deleting_a_group_removes_its_positions_only(store: Store) -> None:
    positions = WriteBatch()
    for group in ("billing", "audit"):
        for partition in (0, 1):
            positions.set_position("orders", group, partition, 3)
    store.write(positions)
    doomed = WriteBatch()
    doomed.delete_group("orders", "billing")
    doomed.delete_group("orders", "never")
    store.write(doomed)
    assert store.recover().positions == {("orders", "audit", 0): 3, ("orders", "audit", 1): 3}


def test_a_batch_of_only_unsynced_appends_commits_without_fsync(store: Store) -> None:
    def synchronous() -> int:  # 2 = FULL (fsync at each commit), 1 = NORMAL (none)
        return int(store._db.execute("PRAGMA synchronous").fetchone()[0])

    requests = batch_of("orders", 0, 0, 3)
    requests.unsynced = requests.records  # requests on a channel that does not sync them
    store.write(requests)
    assert synchronous() == 1
    mixed = batch_of("orders", 0, 3, 2)
    mixed.unsynced = 1  # one record that needs an fsync makes the whole commit fsynced
    store.write(mixed)
    assert synchronous() == 2
    assert [e.offset for e in store.read("orders", 0, 0, 10)] == [0, 1, 2, 3, 4]


def test_a_channels_choice_not_to_sync_requests_survives_reopening(tmp_path: Path) -> None:
    with Store.open(tmp_path / "data") as first:
        batch = WriteBatch()
        layout = ChannelLayout(
            partitions=1, max_messages=10, sync_requests=False, requests="direct"
        )
        batch.declare("quotes", layout)
        first.write(batch)
    with Store.open(tmp_path / "data") as again:
        assert again.recover().channels["quotes"].sync_requests is False
        assert again.recover().channels["quotes"].requests == "direct"
