"""PagedLog: a bounded tail in memory over a store, fed by a plain read function."""

from __future__ import annotations

from seawall._broker.pages import PAGE, PagedLog


def stored(n: int) -> tuple[list[bytes], list[tuple[int, int]]]:
    """A store of ``n`` entries and the list of reads made from it."""
    entries = [str(i).encode() for i in range(n)]
    return entries, []


def test_staged_entries_stay_invisible_until_revealed() -> None:
    log = PagedLog(read=None, keep=0)
    first, second = log.stage(b"a"), log.stage(b"b")
    assert (first, second, log.end, log.next_offset, log.retained) == (0, 1, 0, 2, 2)
    assert log.reveal(1) is True
    assert log.end == 1
    assert log.get(0) == b"a"
    assert log.reveal(1) is False  # already visible: a later task revealing less is a no-op
    log.reveal(2)
    assert [log.get(i) for i in range(2)] == [b"a", b"b"]


def test_abandoned_entries_free_their_offsets() -> None:
    log = PagedLog(read=None, keep=0)
    log.stage(b"a")
    log.reveal(1)
    log.stage(b"lost")
    assert log.abandon() == [b"lost"]
    assert log.stage(b"b") == 1  # the failed write's offset is given out again


def test_tail_is_bounded_and_older_entries_are_read_a_page_at_a_time() -> None:
    entries, reads = stored(3 * PAGE)

    def read(start: int, limit: int) -> list[bytes]:
        reads.append((start, limit))
        return entries[start : start + limit]

    log = PagedLog(read=read, keep=10)
    for entry in entries:
        log.reveal(log.stage(entry) + 1)
    assert [log.get(i) for i in range(len(entries) - 10, len(entries))] == entries[-10:]
    assert reads == []  # the tail served the readers keeping up
    assert [log.get(i) for i in range(len(entries))] == entries
    assert reads == [(0, PAGE), (PAGE, PAGE), (2 * PAGE, PAGE - 10)]


def test_trim_drops_pages_and_tail_below_the_new_base() -> None:
    entries, reads = stored(2 * PAGE)

    def read(start: int, limit: int) -> list[bytes]:
        reads.append((start, limit))
        return entries[start : start + limit]

    log = PagedLog(read=read, keep=4)
    for entry in entries:
        log.reveal(log.stage(entry) + 1)
    assert log.get(3) == b"3"
    log.trim(PAGE + 1)
    assert log.base == PAGE + 1
    assert log.retained == PAGE - 1
    assert log.get(PAGE + 1) == entries[PAGE + 1]
    assert reads == [(0, PAGE), (PAGE + 1, PAGE - 5)]
    log.trim(10**9)  # never past what is visible
    assert log.base == log.end == 2 * PAGE


def test_a_log_recovered_from_a_store_starts_with_its_bounds() -> None:
    kept = {offset: str(offset).encode() for offset in range(5, 20)}  # 0..4 were trimmed

    def read(start: int, limit: int) -> list[bytes]:
        # as the store does: what is kept from ``start`` on, at most ``limit``
        return [kept[o] for o in sorted(kept) if o >= start][:limit]

    log = PagedLog(base=5, end=20, read=read, keep=8)
    assert log.retained == 15
    assert [log.get(o) for o in range(5, 20)] == list(kept.values())
    assert log.stage(b"20") == 20
