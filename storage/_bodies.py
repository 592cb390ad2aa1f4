"""The envelopes of the log's newest events, kept in memory for polling near the head.

A poller that keeps up asks again and again for the few hundred newest events of its
feed. Reading a page from SQLite costs more for the bodies (decoding a hundred records
and copying their bytes) than for the feed's index range that says which seqs are on
the page. So storage keeps the bodies of the newest events here, added as they commit and
as recent pages are read, and a page near the head is the feed's seqs from the database
plus their bodies from memory.

Membership always comes from the database, read in the same statement as the page's
other facts; only bodies come from here. An event's body never changes once committed,
so a body found here is the one on disk, whoever wrote it, and a process that did not
commit an event simply misses it and reads it.

Bodies sit in a list indexed by seq, so the page of an unfiltered webhook (consecutive
seqs) is one slice. The budget counts bytes, and the oldest seqs go first. Pages older
than what the budget can hold are never added: a replay of old history would otherwise
push every recent event out, one page at a time, and pay for the churn.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

# What one entry costs besides its body: the list slot and the bytes object's header.
ENTRY_OVERHEAD = 48
# A guess at an event's size until the first eviction tells how many the budget holds.
_TYPICAL_BODY = 512


def gapless_seqs(count: int, first: int, last: int, limit: int) -> range | None:
    """The seqs of a page read one past `limit` (`count` rows from `first` to `last`), when it has no gaps."""
    if last - first + 1 != count:
        return None
    return range(first, min(last, first + limit - 1) + 1)


class RecentBodies:
    """Event bodies by seq, the newest kept, within `max_bytes`."""

    __slots__ = ("_base", "_bytes", "_items", "_max_bytes", "_window", "floor")

    def __init__(self, max_bytes: int) -> None:
        self._items: list[bytes | None] = []
        self._base = 0  # the seq of _items[0]
        self._bytes = 0
        self._max_bytes = max_bytes
        self._window = max_bytes // (_TYPICAL_BODY + ENTRY_OVERHEAD)
        # No seq at or below this is added again: the budget went to newer ones.
        self.floor = 0

    def holds_recent(self, after_seq: int, head_seq: int) -> bool:
        """Whether a page after `after_seq` is recent enough to read through this cache."""
        return self._max_bytes > 0 and after_seq >= self.floor and after_seq >= head_seq - self._window

    def joined(self, seqs: Sequence[int], separator: bytes = b",") -> bytes | None:
        """The bodies of `seqs` (ascending) joined by `separator`, or None when any of them is not here."""
        items, base = self._items, self._base
        first = seqs[0] - base
        if first < 0 or seqs[-1] - base >= len(items):
            return None
        try:
            if isinstance(seqs, range) and seqs.step == 1:
                return separator.join(items[first : first + len(seqs)])  # type: ignore[arg-type]
            return separator.join([items[seq - base] for seq in seqs])  # type: ignore[misc]
        except TypeError:  # a None: that body is not here
            return None

    def add_many(self, rows: Iterable[tuple[int, bytes]]) -> None:
        for seq, body in rows:
            self.add(seq, body)

    def add(self, seq: int, body: bytes) -> None:
        if seq <= self.floor or not self._max_bytes:
            return
        items = self._items
        if not items:
            self._base = seq
        index = seq - self._base
        if index < 0:
            if -index > self._window:
                return
            items[0:0] = [None] * -index  # an older page than any here, yet within the window
            self._base = seq
            index = 0
        elif index >= len(items):
            if index - len(items) > self._window:  # far past everything here: start again from this seq
                items.clear()
                self._bytes, self._base, index = 0, seq, 0
            items.extend([None] * (index - len(items) + 1))
        if items[index] is not None:
            return
        items[index] = body
        self._bytes += len(body) + ENTRY_OVERHEAD
        if self._bytes > self._max_bytes:
            self._evict()

    def _evict(self) -> None:
        """Drop the oldest seqs until a tenth of the budget is free, not one entry per add."""
        items = self._items
        self._window = max(self._window, len(items))
        budget = self._max_bytes * 9 // 10
        cut = 0
        freed = self._bytes
        while cut < len(items) and freed > budget:
            item = items[cut]
            if item is not None:
                freed -= len(item) + ENTRY_OVERHEAD
            cut += 1
        del items[:cut]
        self._bytes = freed
        self._base += cut
        self.floor = self._base - 1
