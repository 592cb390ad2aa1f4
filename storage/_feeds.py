"""The newest entries of each webhook's feed, in memory: a poll near the head then needs no round trip.

A backend shared by several processes publishes every commit once and in seq order,
its own and the others' (storage/_catchup.py). Which feeds an event joins is decided in
its commit and never changes after, except that deletes remove feed rows (a webhook or
account deleted, retention). So the published stream alone says, for every webhook,
which seqs joined its feed: each webhook's `_Feed` holds them, and a page whose cursor
lies in the range a feed covers is its seqs from here and their bodies from
storage/_bodies.py.

What makes such a page right — the same as a database read, never one with a gap:

- A feed covers `(after, published]`: every seq of the webhook's feed in that range is in
  `seqs`. Publishing seq N appends N to the feeds it joined, and the catch-up publishes
  nothing out of order, so the range only grows at its top. A database page of the
  feed extends it downwards (`learned`) when the seqs it read reach the covered range:
  one snapshot holds every commit up to its newest, so the two meet without a hole.
- A webhook this process has no feed for covers `(origin, published]` with no seqs:
  `origin` is the head when the process opened the log, and every later entry would
  have been published and given it a feed.
- A feed of a deleted webhook stops covering anything older than now (`forget`): its
  rows are gone from the database, and a page from here would show them. A read that
  was under way meanwhile may have seen them, so it teaches nothing (`mark`).
- Retention deletes the oldest events. A cursor below the newest watermark this process
  knows is read from the database, so that page says `pruned`. A catch-up read that
  skipped pruned events reads the watermark in the same statement (`pruned_to`), before
  they could look like a hole in the feed; a page from here that still holds an event
  pruned a moment ago in another process skips nothing, so it needs no `pruned`.
- Pages are only served while the process hears other processes' commits: from the
  moment its notification connection is lost (`suspend`) until it has published
  everything up to the head read after listening again (`resume_at`). A process that
  cannot hear would answer from an outdated feed. Nor while a newer head is known
  (`saw_head`: a notification not yet caught up on, a database read that saw more):
  a process never answers a page older than one it answered before. So a page here is
  as fresh as what this process has heard: its own commits at once, another process's
  once its notification arrives (about a millisecond).

Memory: seqs sit in one `array('q')` per webhook, 8 bytes an entry. Seqs whose bodies
the recent bodies have dropped are of no use; they go when the entries reach a bound,
and if that is not enough, the older half of the covered range goes.
"""

from __future__ import annotations

from array import array
from bisect import bisect_right
from collections.abc import Sequence

from storage._bodies import RecentBodies
from storage.base import Committed, JoinedPage

# Entries kept across every feed before the ones older than the recent bodies are dropped.
MAX_ENTRIES = 1 << 22


class _Feed:
    """One webhook's feed seqs: every one with after < seq <= the published seq is in `seqs`."""

    __slots__ = ("after", "seqs")

    def __init__(self, after: int) -> None:
        self.after = after
        self.seqs = array("q")


class RecentFeeds:
    """Every webhook's newest feed seqs, kept from the published commits, and the pages they answer."""

    def __init__(self, bodies: RecentBodies, *, enabled: bool = True, max_entries: int = MAX_ENTRIES) -> None:
        self._bodies = bodies
        self._enabled = enabled
        self._max_entries = max_entries
        self._feeds: dict[str, _Feed] = {}
        self._origin = 0
        self._entries = 0
        # The newest seq published; the newest retention watermark known.
        self.published = 0
        self.pruned = 0
        # The newest head this process has seen anywhere: pages wait for `published` to reach it.
        self._newest = 0
        # Counts `forget`s: a database read that started before one may hold rows deleted since.
        self._forgotten = 0
        # Pages are served once `published` reaches this; None while other processes' commits go unheard.
        self._live_at: int | None = None

    def start(self, head_seq: int, pruned_through: int) -> None:
        """Cover the log from `head_seq` on (what it held when this process opened it); not live yet."""
        self._feeds.clear()
        self._entries = 0
        self._origin = self.published = self._newest = head_seq
        self.pruned = pruned_through
        self._live_at = None

    def suspend(self) -> None:
        """Commits of other processes may now go unheard: serve no page until `resume_at` is reached."""
        self._live_at = None

    def resume_at(self, head_seq: int) -> None:
        """Serve pages again once everything up to `head_seq` (read after listening again) is published."""
        self._live_at = head_seq

    def saw_head(self, head_seq: int) -> None:
        """The log's head is at least `head_seq`: no page from memory until that is published."""
        if head_seq > self._newest:
            self._newest = head_seq

    @property
    def live(self) -> bool:
        return self._live_at is not None and self.published >= max(self._live_at, self._newest)

    def publish(self, committed: Sequence[Committed]) -> None:
        """Add the seqs of newly published commits (every one once, in seq order) to the feeds they joined."""
        feeds = self._feeds
        origin = self._origin
        added = 0
        for item in committed:
            seq = item.event.seq
            for webhook_id in item.webhook_ids:
                feed = feeds.get(webhook_id)
                if feed is None:
                    feed = feeds[webhook_id] = _Feed(origin)
                feed.seqs.append(seq)
                added += 1
        self.published = committed[-1].event.seq
        self._entries += added
        if self._entries > self._max_entries:
            self._shrink()

    def pruned_to(self, pruned_through: int) -> None:
        """Retention deleted every event up to `pruned_through`: cursors below it are read from the database."""
        if pruned_through > self.pruned:
            self.pruned = pruned_through

    def forget(self, webhook_id: str) -> None:
        """The webhook's feed rows were deleted: cover nothing of it older than now."""
        self._forgotten += 1
        feed = self._feeds.get(webhook_id)
        if feed is None:
            return  # it has no entries this process heard of, and the database now has none either
        self._entries -= len(feed.seqs)
        feed.seqs = array("q")
        feed.after = self.published

    def page(self, webhook_id: str, after_seq: int, limit: int) -> JoinedPage | None:
        """The page after `after_seq` from memory, or None when it must be read from the database."""
        published = self.published
        if (
            not self._enabled
            or self._live_at is None
            or published < self._live_at
            or published < self._newest
            or after_seq > published  # a cursor from a process that has heard more
            or after_seq < self.pruned
        ):
            return None
        feed = self._feeds.get(webhook_id)
        if feed is None:
            return JoinedPage(b"", 0, None, False, self.pruned) if after_seq >= self._origin else None
        if after_seq < feed.after:
            return None
        seqs = feed.seqs
        start = bisect_right(seqs, after_seq)
        end = start + limit
        found = seqs[start:end]
        if not found:
            return JoinedPage(b"", 0, None, False, self.pruned)
        first, last = found[0], found[-1]
        # An unfiltered feed's seqs are consecutive: the bodies are then one slice.
        wanted: Sequence[int] = range(first, last + 1) if last - first + 1 == len(found) else found
        joined = self._bodies.joined(wanted)
        if joined is None:
            return None
        return JoinedPage(joined, len(found), last, len(seqs) > end, self.pruned)

    def covered_after(self, webhook_id: str) -> int:
        """The seq above which this process holds every entry of the webhook's feed."""
        feed = self._feeds.get(webhook_id)
        return self._origin if feed is None else feed.after

    def mark(self) -> int:
        """Taken before a database read and handed to `learned` with what it found."""
        return self._forgotten

    def learned(
        self, mark: int, webhook_id: str, after_seq: int, seqs: Sequence[int], through: int, head: int, pruned: int
    ) -> None:
        """A database read found `seqs` (ascending), every seq of the feed in (after_seq, through] at its snapshot.

        `head` and `pruned` are that snapshot's head and watermark: below the watermark the read knew nothing.
        """
        self.saw_head(head)
        self.pruned_to(pruned)
        if not self._enabled or mark != self._forgotten:
            return
        low = max(after_seq, pruned, self._bodies.floor)
        feed = self._feeds.get(webhook_id)
        covered_after = self._origin if feed is None else feed.after
        if low >= covered_after or through < covered_after:
            return  # nothing new, or a hole between what was read and what is covered
        if feed is None:
            feed = self._feeds[webhook_id] = _Feed(covered_after)
        older = array("q", [seq for seq in seqs if low < seq <= covered_after])
        if older:
            feed.seqs[0:0] = older
            self._entries += len(older)
        feed.after = low
        if self._entries > self._max_entries:
            self._shrink()

    def _shrink(self) -> None:
        """Drop the seqs whose bodies are gone; if that is not enough, the older half of the covered range."""
        floor = self._bodies.floor
        self._drop_through(floor)
        if self._entries > self._max_entries * 3 // 4:
            oldest = min((feed.after for feed in self._feeds.values()), default=self.published)
            self._drop_through(max(floor, oldest + (self.published - oldest) // 2))

    def _drop_through(self, through: int) -> None:
        self._origin = max(self._origin, through)
        entries = 0
        for feed in self._feeds.values():
            if feed.after < through:
                cut = bisect_right(feed.seqs, through)
                if cut:
                    del feed.seqs[:cut]
                feed.after = through
            entries += len(feed.seqs)
        self._entries = entries
