"""The I/O-free half of following a feed, shared by `Client` and `AsyncClient`.

`Watch` holds the position and applies the caller's choice for the two things a consumer must not
miss: a pruned gap and a new epoch. `PollState` and `StreamState` turn polling pages and SSE bytes
into events and say what to do next; the clients only do the requests and the waiting.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable, Mapping
from email.utils import parsedate_to_datetime
from typing import Any

from hookstream_client._sse import SSEParser
from hookstream_client.cursor import CursorStore
from hookstream_client.errors import EpochChanged, FeedPruned
from hookstream_client.models import Event, Page

PrunedCallback = Callable[[FeedPruned], None]
EpochCallback = Callable[[EpochChanged], None]
# Told of the stream's connection: "connected", "reconnecting", "waiting", "stopped", and a detail.
StatusCallback = Callable[[str, str | None], None]

EPOCH_HEADER = "hookstream-epoch"
DEFAULT_RETRY_MS = 3000
MAX_BACKOFF = 30.0


def ignore_status(state: str, detail: str | None) -> None:
    """The default `on_status`: connection changes are not reported."""


class Watch:
    """A feed position, the epoch it belongs to, and what to do on a gap or a new epoch."""

    def __init__(
        self,
        after: int | None,
        cursor: CursorStore | None,
        epoch: str | None,
        on_pruned: PrunedCallback | None,
        on_epoch_change: EpochCallback | None,
    ) -> None:
        self.store = cursor
        self.seq = after if after is not None else (cursor.seq if cursor is not None else None)
        # A consumer with a cursor store that has never acknowledged anything wants the whole retained
        # feed, and the events retention deleted before it existed are no gap of its own.
        self.fresh = self.seq is None and cursor is not None
        self.epoch = epoch if epoch is not None else (cursor.epoch if cursor is not None else None)
        self.on_pruned = on_pruned
        self.on_epoch_change = on_epoch_change

    def saw_epoch(self, epoch: str | None) -> bool:
        """Check the log's epoch; True when the caller chose to go on and the feed restarts from seq 0."""
        if epoch is None or epoch == self.epoch:
            return False
        if self.epoch is None:
            self.epoch = epoch
            if self.store is not None and self.store.epoch is None:
                self.store.epoch = epoch  # saved with the next acknowledgement
            return False
        return self.epoch_changed(EpochChanged(self.epoch, epoch))

    def epoch_changed(self, change: EpochChanged) -> bool:
        """Raise `change`, or tell the callback and restart from seq 0 of the new log."""
        if self.on_epoch_change is None:
            raise change
        self.on_epoch_change(change)
        self.seq, self.epoch = 0, change.current
        if self.store is not None:
            self.store.reset(change.current, 0)
        return True

    def pruned(self, after_seq: int, oldest_seq: int | None) -> None:
        """Raise `FeedPruned`, or tell the callback and go on."""
        if self.fresh:
            return
        gap = FeedPruned(after_seq, oldest_seq)
        if self.on_pruned is None:
            raise gap
        self.on_pruned(gap)


class Backoff:
    """Delays between attempts: the server's Retry-After or retry: when it gave one, else doubling with jitter."""

    def __init__(self, base: float = 0.5) -> None:
        self.base = base
        self.failures = 0

    def next(self, hint: float | None = None) -> float:
        self.failures += 1
        if hint is not None:
            return min(max(hint, 0.0), 3600.0)
        delay: float = min(self.base * 2 ** (self.failures - 1), MAX_BACKOFF)
        return delay * random.uniform(0.8, 1.2)

    def reset(self) -> None:
        self.failures = 0


def retry_after(headers: Mapping[str, str]) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or an HTTP-date), None when absent or unreadable."""
    raw = headers.get("retry-after")
    if raw is None:
        return None
    raw = raw.strip()
    if raw.isdigit():
        return float(raw)
    try:
        return max(0.0, parsedate_to_datetime(raw).timestamp() - time.time())
    except (TypeError, ValueError):
        return None


def parse_page(body: dict[str, Any]) -> Page:
    """A polling page from its JSON body."""
    return Page(
        events=[Event.from_json(envelope) for envelope in body["events"]],
        has_more=bool(body["hasMore"]),
        last_seq=body.get("lastSeq"),
        epoch=body.get("epoch", ""),
        pruned=bool(body.get("pruned", False)),
    )


class PollState:
    """Paging through a feed with `afterSeq`, long-polling at the end when following."""

    def __init__(self, watch: Watch, *, limit: int, follow: bool, wait: float) -> None:
        self.watch = watch
        self.limit = limit
        self.follow = follow
        self.wait = wait
        self.caught_up = False

    def params(self) -> dict[str, str | int | float]:
        params: dict[str, str | int | float] = {"limit": self.limit}
        if self.watch.seq is not None:
            params["afterSeq"] = self.watch.seq
        if self.caught_up and self.follow:
            params["wait"] = self.wait
        return params

    def take(self, page: Page) -> list[Event] | None:
        """The page's events to yield (None: the epoch changed and the feed restarts from seq 0)."""
        if self.watch.saw_epoch(page.epoch or None):
            self.caught_up = False
            return None
        if page.pruned and self.watch.seq is not None:
            self.watch.pruned(self.watch.seq, page.events[0].seq if page.events else None)
        if page.events:
            self.watch.fresh = False
        self.caught_up = not page.has_more
        return page.events

    @property
    def done(self) -> bool:
        return self.caught_up and not self.follow


class StreamState:
    """Following the SSE stream: the request's headers, the bytes' events, and the reconnect delay."""

    def __init__(self, watch: Watch) -> None:
        self.watch = watch
        self.retry_ms = DEFAULT_RETRY_MS
        self.parser = SSEParser()

    def headers(self) -> dict[str, str]:
        headers = {"accept": "text/event-stream", "cache-control": "no-cache"}
        if self.watch.seq is not None:
            headers["last-event-id"] = str(self.watch.seq)
        elif self.watch.fresh:
            headers["last-event-id"] = "0"  # the whole retained feed, not the live tail
        return headers

    def opened(self, headers: Mapping[str, str]) -> bool:
        """A fresh connection: False when the epoch changed and it must reconnect from seq 0."""
        self.parser = SSEParser()
        return not self.watch.saw_epoch(headers.get(EPOCH_HEADER))

    def events(self, chunk: bytes) -> list[Event]:
        """The feed events completed by `chunk` (a `pruned` message goes to the watch first)."""
        events: list[Event] = []
        for message in self.parser.feed(chunk):
            if message.retry_ms is not None:
                self.retry_ms = message.retry_ms
            if message.data is None:
                if message.last_event_id.isdigit():
                    self.watch.seq = int(message.last_event_id)  # the stream's opening cursor
                continue
            if message.event == "pruned":
                gap = json.loads(message.data)
                self.watch.pruned(int(gap["afterSeq"]), int(gap["oldestSeq"]))
                continue
            event = Event.from_json(json.loads(message.data))
            events.append(event)
        return events

    def delivered(self, event: Event) -> None:
        """The caller has `event`: a reconnect resumes after it."""
        self.watch.seq = event.seq
        self.watch.fresh = False

    @property
    def retry_seconds(self) -> float:
        return self.retry_ms / 1000
