"""Wakes readers of a webhook's feed when events join it.

The storage backend calls `Hub.publish` once per commit. Long polls and
streams wait on their own webhook's signal only, so a commit wakes exactly
the readers whose feed grew, not every open connection.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Sequence

from storage.base import Committed


class Hub:
    """Per-webhook wake-up signals and the newest seq this process knows of."""

    def __init__(self) -> None:
        self._waiters: defaultdict[str, set[asyncio.Event]] = defaultdict(set)
        self.head_seq = 0

    def publish(self, committed: Sequence[Committed], head_seq: int) -> None:
        """Wake the readers of every webhook that these events joined."""
        self.head_seq = max(self.head_seq, head_seq)
        woken: set[str] = set()
        for item in committed:
            woken.update(item.webhook_ids)
        for webhook_id in woken:
            self.wake(webhook_id)

    def wake(self, webhook_id: str) -> None:
        """Wake every reader of this webhook (new events, or the webhook stopped)."""
        for event in self._waiters.get(webhook_id, ()):
            event.set()

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
