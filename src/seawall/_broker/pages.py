"""A partition as the broker holds it: a bounded tail in memory over the store.

Sans-IO: the store is reached only through the ``read`` callable it is given.
Offsets are handed out when a message is published (:meth:`PagedLog.stage`);
the entry becomes visible to consumers only once the store says it is durable
(:meth:`PagedLog.reveal`), so a consumer never handles a message that a crash
could take back. Readers keeping up with publishers are served from the tail;
a reader behind it (a replay, a backlog of a million messages) reads a page
at a time from the store, so memory stays bounded by ``keep`` entries plus a
few pages per partition, whatever the backlog.

Without a store (``read`` is None) nothing is evicted: the tail is the log.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Callable

__all__ = ["PAGE", "PagedLog", "Reader"]

PAGE = 256
"""Entries fetched from the store at once by a reader behind the tail."""
_PAGES_KEPT = 4
"""Pages cached per partition: enough for a few groups reading far behind."""

Reader = Callable[[int, int], list[bytes]]
"""``read(start, limit)``: committed entries from ``start``, at most ``limit``."""


class PagedLog:
    """One partition: offsets ``base`` to ``end`` are readable, later ones are staged."""

    __slots__ = ("_keep", "_pages", "_pending", "_read", "_tail", "_tail_base", "base", "end")

    def __init__(self, *, base: int = 0, end: int = 0, read: Reader | None, keep: int) -> None:
        self.base = base
        self.end = end
        self._read = read
        self._keep = keep
        self._tail: deque[bytes] = deque()
        self._tail_base = end
        self._pending: deque[bytes] = deque()
        self._pages: OrderedDict[int, tuple[int, list[bytes]]] = OrderedDict()
        """Page start -> (offset of the first entry read, the entries)."""

    @property
    def next_offset(self) -> int:
        """The offset the next staged entry gets."""
        return self.end + len(self._pending)

    @property
    def retained(self) -> int:
        """Entries held for consumers, staged ones included."""
        return self.next_offset - self.base

    @property
    def held(self) -> int:
        """Entries in memory: the tail, staged ones and cached pages."""
        paged = sum(len(entries) for _, entries in self._pages.values())
        return len(self._tail) + len(self._pending) + paged

    def stage(self, entry: bytes) -> int:
        """Give ``entry`` the next offset; it stays invisible until revealed."""
        self._pending.append(entry)
        return self.next_offset - 1

    def reveal(self, upto: int) -> bool:
        """Entries below ``upto`` are durable: make them readable; True if any became so."""
        if upto <= self.end:
            return False
        pending, tail = self._pending, self._tail
        for _ in range(min(upto, self.next_offset) - self.end):
            tail.append(pending.popleft())
            self.end += 1
        if self._read is not None:
            while len(tail) > self._keep:
                tail.popleft()
                self._tail_base += 1
        return True

    def abandon(self) -> list[bytes]:
        """Drop staged entries (their write failed); returns them."""
        dropped = list(self._pending)
        self._pending.clear()
        return dropped

    def get(self, offset: int) -> bytes:
        """The entry at ``offset`` (``base <= offset < end``)."""
        if offset >= self._tail_base:
            return self._tail[offset - self._tail_base]
        start = offset - offset % PAGE
        page = self._pages.get(start)
        if page is None or not page[0] <= offset < page[0] + len(page[1]):
            page = self._load(start, offset)
        else:
            self._pages.move_to_end(start)
        first, entries = page
        return entries[offset - first]

    def _load(self, start: int, offset: int) -> tuple[int, list[bytes]]:
        """Read the page holding ``offset``; pages below ``base`` hold only what is kept."""
        if self._read is None:  # pragma: no cover - a memory log never evicts
            raise LookupError(f"offset {offset} is below the in-memory log")
        first = max(start, self.base)
        entries = self._read(first, min(start + PAGE, self._tail_base) - first)
        if not first <= offset < first + len(entries):
            raise LookupError(
                f"the store returned {len(entries)} entries from offset {first}, not offset "
                f"{offset}: the log's files were changed under the broker; restart it"
            )
        page = self._pages[start] = (first, entries)
        while len(self._pages) > _PAGES_KEPT:
            self._pages.popitem(last=False)
        return page

    def trim(self, below: int) -> None:
        """Forget entries below ``below`` (settled by every group, or retention)."""
        below = min(below, self.end)
        if below <= self.base:
            return
        self.base = below
        while self._tail_base < below and self._tail:
            self._tail.popleft()
            self._tail_base += 1
        for start in [s for s in self._pages if s + PAGE <= below]:
            del self._pages[start]
