"""Publishing every commit once, in seq order, when other processes write to the same log.

A backend shared by several processes learns of its own commits from its writer and of
the others' from a wake-up (PostgreSQL's NOTIFY, a datagram between SQLite processes).
Either way, what it hands its notifiers (the hub, the recent bodies) must be every
event once and in seq order: the hub's tails and the streams' cursors rely on it. So a
local commit is published at once only when it follows the newest seq already published;
otherwise, and on every wake-up, one task reads the events after that seq from the
database, with the webhooks whose feeds they joined, and publishes them. A wake-up that
is lost or late costs only latency: the next one, or the backend's periodic check, reads
everything since the last seq published.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from storage.base import Committed

logger = logging.getLogger("hookstream.storage")

# Events read per catch-up query; a longer gap takes several.
CATCH_UP_PAGE = 1000


class CatchUp:
    """The newest seq this process has published, and the task that fills the gaps behind it."""

    def __init__(
        self,
        read_after: Callable[[int, int], Awaitable[list[Committed]]],
        publish: Callable[[list[Committed]], None],
        *,
        name: str,
    ) -> None:
        self._read_after = read_after
        self._publish = publish
        self._name = name
        # Every seq up to here has been handed to the notifiers of this process.
        self.published_seq = 0
        self._behind = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self, head_seq: int) -> None:
        """Publish from after `head_seq` on (what the log held when this process opened it)."""
        self.published_seq = head_seq
        self._behind = asyncio.Event()
        self._task = asyncio.create_task(self._run(), name=self._name)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None

    def committed_here(self, committed: list[Committed]) -> None:
        """This process's writer committed these: publish them now, unless others' commits come first."""
        if committed[0].event.seq == self.published_seq + 1:
            self._emit(committed)
        else:
            self._behind.set()

    def heard(self, head_seq: int) -> None:
        """Another process says the log's head is `head_seq`."""
        if head_seq > self.published_seq:
            self._behind.set()

    def behind(self) -> None:
        """Check the log for commits not yet published (a wake-up may have been missed)."""
        self._behind.set()

    def _emit(self, committed: list[Committed]) -> None:
        self.published_seq = committed[-1].event.seq
        self._publish(committed)

    async def _run(self) -> None:
        delay = 0.05
        while True:
            await self._behind.wait()
            self._behind.clear()
            try:
                while await self._catch_up() == CATCH_UP_PAGE:
                    pass
                delay = 0.05
            except Exception as exc:  # a dead catch-up task would leave every stream here silent for good
                logger.warning("catching up on the log failed (%r); retrying in %.2fs", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
                self._behind.set()

    async def _catch_up(self) -> int:
        rows = await self._read_after(self.published_seq, CATCH_UP_PAGE)
        # A local commit may have been published while the read ran.
        fresh = [row for row in rows if row.event.seq > self.published_seq]
        if fresh:
            self._emit(fresh)
        return len(rows)
