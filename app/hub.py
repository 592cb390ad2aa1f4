"""Wakes readers of a webhook's feed when events join it.

The storage backend calls `Hub.publish` once per commit. Long polls and
streams wait on their own webhook's signal only, so a commit wakes exactly
the readers whose feed grew, not every open connection. A webhook change
wakes them too (`wake`), whichever process made it: storage tells of other
processes' changes (`Storage.watch_webhooks`), and a stream that wakes reads
its webhook again and ends when it is stopped or gone.

Open streams also register as `FeedWatcher`s. For each webhook that has one,
the hub keeps a tail of the events that joined its feed since the first
watcher came, trimmed to what some watcher has not sent yet, so a live
stream's wake-up reads memory instead of the database. The tail holds each
event's SSE message, built once at commit: a thousand streams of one webhook
then send the same bytes rather than formatting them a thousand times. The
tail is only right because `publish` sees every commit once and in seq order
(the storage contract); a stream whose cursor is older than the tail reads
storage.

A publish hands each watcher one `Growth` (once the commit's own callers have been
answered): the new events as one HTTP/1.1 chunk, and the seq range a watcher must
be at for that chunk to be exactly what it misses. A stream parked at the live
tail then writes those very bytes to its socket in that one loop over the
webhook's watchers — no task wake-up, no formatting per subscriber (see
app/streaming.py).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections import defaultdict, deque
from collections.abc import Sequence
from typing import NamedTuple, Protocol

from storage.base import Committed, StoredEvent

logger = logging.getLogger("hookstream.hub")

# Most events a watched webhook's tail holds for its slowest stream before that stream reads storage instead.
TAIL_LIMIT = 1024


def event_frame(event: StoredEvent) -> bytes:
    """One feed event as an SSE message; the envelope bytes go out exactly as stored (one line of JSON)."""
    return b"id: %d\nevent: %b\ndata: %b\n\n" % (event.seq, event.type.encode(), event.body)


class TailFrame(NamedTuple):
    """One event of a watched feed: its seq and its SSE message."""

    seq: int
    frame: bytes


class Growth:
    """What one publish added to a watched feed, ready to write: every event with seq in (`since`, `last`]."""

    __slots__ = ("chunk", "count", "first", "last", "since")

    def __init__(self, since: int, frames: list[TailFrame]) -> None:
        # Every feed event up to `since` came before this publish: a watcher at a cursor in [since, first)
        # has sent everything else, so `chunk` is exactly what it misses.
        self.since = since
        self.first = frames[0].seq
        self.last = frames[-1].seq
        self.count = len(frames)
        body = frames[0].frame if len(frames) == 1 else b"".join([item.frame for item in frames])
        self.chunk = b"%x\r\n%b\r\n" % (len(body), body)


class FeedWatcher(Protocol):
    """An open stream: told when its webhook's feed grows or the webhook itself changes."""

    @property
    def cursor(self) -> int:
        """The seq of the last event this watcher has sent."""

    def feed_grew(self, growth: Growth) -> None:
        """`growth.count` events joined the feed."""

    def webhook_changed(self) -> None:
        """The webhook was stopped, started, updated or deleted."""


class _Tail:
    """The newest events of one webhook's feed: every one with seq > `covered_after` is here."""

    __slots__ = ("covered_after", "events")

    def __init__(self, covered_after: int) -> None:
        self.covered_after = covered_after
        self.events: deque[TailFrame] = deque()

    @property
    def last_seq(self) -> int:
        """Every feed event up to this seq is older than the tail's newest."""
        return self.events[-1].seq if self.events else self.covered_after

    def append(self, event: TailFrame) -> None:
        self.events.append(event)
        if len(self.events) > TAIL_LIMIT:
            self.covered_after = self.events.popleft().seq

    def trim(self, through: int) -> None:
        """Forget events every watcher has already sent."""
        events = self.events
        while events and events[0].seq <= through:
            self.covered_after = events.popleft().seq


class Hub:
    """Per-webhook wake-up signals and the newest seq this process knows of."""

    def __init__(self) -> None:
        self._waiters: defaultdict[str, set[asyncio.Event]] = defaultdict(set)
        self._watchers: dict[str, set[FeedWatcher]] = {}
        self._tails: dict[str, _Tail] = {}
        self.head_seq = 0

    def publish(self, committed: Sequence[Committed], head_seq: int) -> None:
        """Wake the readers of every webhook that these events joined."""
        self.head_seq = max(self.head_seq, head_seq)
        grown: dict[str, int] = {}
        # Per watched webhook: where its tail ended before this publish, and the events it gained.
        fresh: dict[str, tuple[int, list[TailFrame]]] = {}
        tails = self._tails
        for item in committed:
            framed: TailFrame | None = None
            for webhook_id in item.webhook_ids:
                grown[webhook_id] = grown.get(webhook_id, 0) + 1
                tail = tails.get(webhook_id)
                if tail is not None:
                    if framed is None:
                        framed = TailFrame(item.event.seq, event_frame(item.event))
                    gained = fresh.get(webhook_id)
                    if gained is None:
                        gained = fresh[webhook_id] = (tail.last_seq, [])
                    gained[1].append(framed)
                    tail.append(framed)
        for webhook_id in grown:
            self._set_waiters(webhook_id)
        if fresh:
            growths = [(webhook_id, Growth(since, frames)) for webhook_id, (since, frames) in fresh.items()]
            # Written after the commit's own callers are answered (their wake-ups are queued right after this
            # call, hence two hops): a producer's next request then does not wait behind a thousand socket
            # writes, and its commit overlaps them. Each watcher's cursor decides what a growth still gives it.
            loop = asyncio.get_running_loop()
            loop.call_soon(loop.call_soon, self._fan_out, growths)

    def _fan_out(self, growths: list[tuple[str, Growth]]) -> None:
        for webhook_id, growth in growths:
            watchers = self._watchers.get(webhook_id)
            if not watchers:
                continue
            for watcher in list(watchers):
                try:
                    watcher.feed_grew(growth)
                except Exception:  # one broken stream must not keep the event from the others
                    logger.exception("a stream of webhook %s failed to take new events", webhook_id)
            if watchers:  # empty when the last one went away meanwhile, and the tail with it
                self._tails[webhook_id].trim(min(watcher.cursor for watcher in watchers))

    def wake(self, webhook_id: str) -> None:
        """Wake every reader of this webhook because the webhook changed (stopped, started, updated, deleted)."""
        self._set_waiters(webhook_id)
        for watcher in list(self._watchers.get(webhook_id, ())):
            watcher.webhook_changed()

    def wake_all(self) -> None:
        """Wake every reader of every webhook: any of them may have changed unheard (a lost connection)."""
        for webhook_id in {*self._waiters, *self._watchers}:
            self.wake(webhook_id)

    def _set_waiters(self, webhook_id: str) -> None:
        for event in self._waiters.get(webhook_id, ()):
            event.set()

    def watch(self, webhook_id: str, watcher: FeedWatcher) -> None:
        """Tell `watcher` about this webhook from now on, and keep a tail of its feed while anyone watches."""
        watchers = self._watchers.get(webhook_id)
        if watchers is None:
            watchers = self._watchers[webhook_id] = set()
            self._tails[webhook_id] = _Tail(self.head_seq)
        watchers.add(watcher)

    def unwatch(self, webhook_id: str, watcher: FeedWatcher) -> None:
        watchers = self._watchers.get(webhook_id)
        if watchers is not None:
            watchers.discard(watcher)
            if not watchers:
                del self._watchers[webhook_id]
                del self._tails[webhook_id]

    def tail_after(self, webhook_id: str, cursor: int) -> list[TailFrame] | None:
        """The watched webhook's feed events after `cursor`, from memory; None when the tail starts later."""
        tail = self._tails.get(webhook_id)
        if tail is None or cursor < tail.covered_after:
            return None
        events = tail.events
        start = len(events)
        while start and events[start - 1].seq > cursor:
            start -= 1
        return list(itertools.islice(events, start, None))

    def listen(self, webhook_id: str) -> asyncio.Event:
        """A signal set when the webhook's feed changes; pass it to `unlisten` when done."""
        event = asyncio.Event()
        self._waiters[webhook_id].add(event)
        return event

    def unlisten(self, webhook_id: str, event: asyncio.Event) -> None:
        waiters = self._waiters.get(webhook_id)
        if waiters is not None:
            waiters.discard(event)
            if not waiters:
                del self._waiters[webhook_id]
