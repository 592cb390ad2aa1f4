"""The newest events' bodies in memory: pages read through them are the pages on disk."""

from __future__ import annotations

import random
import sqlite3
from pathlib import Path

import pytest

from app.catalog import filter_matches
from storage._bodies import ENTRY_OVERHEAD, RecentBodies
from storage.base import JoinedPage
from storage.sqlite import SQLiteStorage, _recent_page
from tests.test_storage_contract import event, monitored_account, webhook

pytestmark = pytest.mark.anyio


def test_the_budget_keeps_the_newest_bodies_and_never_takes_back_older_ones() -> None:
    body = b"x" * 80
    cache = RecentBodies(max_bytes=10 * (len(body) + ENTRY_OVERHEAD))
    for seq in range(1, 11):
        cache.add(seq, body)
    assert cache.joined(range(1, 11)) == b",".join([body] * 10)
    cache.add(11, body)  # over budget: the oldest tenth goes
    assert cache.joined([1]) is None and cache.joined(range(2, 4)) is None
    assert cache.joined(range(3, 12)) == b",".join([body] * 9)
    assert cache.floor == 2
    cache.add(1, body)  # pushed out once, not let back in by a reader of old pages
    assert cache.joined([1]) is None


def test_bodies_arrive_in_any_order_and_a_gap_is_a_miss() -> None:
    cache = RecentBodies(max_bytes=1 << 20)
    for seq in (50, 52, 40, 51):
        cache.add(seq, b"%d" % seq)
    assert cache.joined(range(50, 53)) == b"50,51,52"
    assert cache.joined([40, 50, 52]) == b"40,50,52"
    assert cache.joined(range(40, 51)) is None  # 41-49 were never added
    assert cache.joined([39]) is None and cache.joined([53]) is None


def test_only_pages_near_the_head_go_through_the_cache() -> None:
    cache = RecentBodies(max_bytes=1000 * (200 + ENTRY_OVERHEAD))
    for seq in range(1, 1001):
        cache.add(seq, b"y" * 200)
    cache.add(1001, b"y" * 200)  # the first eviction tells it how many events the budget holds
    assert cache.holds_recent(after_seq=9_500, head_seq=10_000)
    assert not cache.holds_recent(after_seq=5_000, head_seq=10_000)  # a replay of older history
    assert not RecentBodies(0).holds_recent(after_seq=9_999, head_seq=10_000)


async def _pages(storage: SQLiteStorage, webhook_id: str, cursors: list[int], limit: int) -> list[JoinedPage]:
    return [await storage.read_feed_joined(webhook_id, cursor, limit) for cursor in cursors]


@pytest.mark.parametrize("budget", [64 << 20, 6_000])
async def test_pages_read_through_the_cache_are_the_pages_on_disk(tmp_path: Path, budget: int) -> None:
    """Commit-filled, read-filled and partly evicted: every page equals the uncached read of it."""
    path = str(tmp_path / "log.db")
    storage = SQLiteStorage(path, matcher=filter_matches, event_cache_bytes=budget)
    await storage.open()
    account_id, every = await monitored_account(storage)
    filtered = webhook(account_id, ("message.new",))
    await storage.create_webhook(filtered)
    rng = random.Random(3)
    for _ in range(12):
        types = ["message.new" if rng.random() < 0.3 else "email.new" for _ in range(rng.randint(1, 40))]
        await storage.append(account_id, [event(t) for t in types])
    cursors = [0, 1, 5, 17, 100, 150, 230, 10_000]
    truth = SQLiteStorage(path, matcher=filter_matches, event_cache_bytes=0)
    await truth.open()
    try:
        for webhook_id in (every.id, filtered.id):
            for limit in (1, 7, 100):
                expected = await _pages(truth, webhook_id, cursors, limit)
                assert await _pages(storage, webhook_id, cursors, limit) == expected  # filled at commit
                reopened = SQLiteStorage(path, matcher=filter_matches, event_cache_bytes=budget)
                await reopened.open()
                try:
                    assert await _pages(reopened, webhook_id, cursors, limit) == expected  # filled by reads
                    assert await _pages(reopened, webhook_id, cursors, limit) == expected  # served from memory
                finally:
                    await reopened.close()
    finally:
        await truth.close()
        await storage.close()


async def test_events_another_process_committed_are_read_from_disk(tmp_path: Path) -> None:
    path = str(tmp_path / "log.db")
    reader = SQLiteStorage(path, matcher=filter_matches)
    await reader.open()
    writer = SQLiteStorage(path, matcher=filter_matches)
    await writer.open()
    try:
        account_id, hook = await monitored_account(reader)
        await reader.append(account_id, [event() for _ in range(5)])
        await writer.append(account_id, [event() for _ in range(5)])
        page = await reader.read_feed_joined(hook.id, 0, 100)
        direct = await reader.read_feed(hook.id, 0, 100)
        assert page.count == 10 and page.joined == b",".join(e.body for e in direct.events)
    finally:
        await writer.close()
        await reader.close()


async def test_pruned_events_are_never_served_from_memory(tmp_path: Path) -> None:
    storage = SQLiteStorage(str(tmp_path / "log.db"), matcher=filter_matches)
    await storage.open()
    try:
        account_id, hook = await monitored_account(storage)
        await storage.append(account_id, [event() for _ in range(30)])
        assert (await storage.read_feed_joined(hook.id, 0, 100)).count == 30
        assert await storage.prune(older_than=2**62, batch_size=20) == 20
        page = await storage.read_feed_joined(hook.id, 0, 100)
        assert page.count == 10 and page.pruned_through == 20
        assert b'"seq":21,' in page.joined and b'"seq":20,' not in page.joined
    finally:
        await storage.close()


async def test_a_page_whose_feed_moves_between_its_two_reads_is_read_again_in_one(tmp_path: Path) -> None:
    """Bodies not in memory take a second statement; a prune landing between the two must not mix snapshots."""
    path = str(tmp_path / "log.db")
    storage = SQLiteStorage(path, matcher=filter_matches, event_cache_bytes=0)
    await storage.open()
    try:
        account_id, hook = await monitored_account(storage)
        await storage.append(account_id, [event() for _ in range(10)])
    finally:
        await storage.close()
    other = sqlite3.connect(path, isolation_level=None)
    conn = sqlite3.connect(path, isolation_level=None)

    class PrunedInBetween:
        """A real connection; another one deletes the page's first events just before the second statement."""

        calls = 0

        def execute(self, sql: str, params: tuple[object, ...]) -> sqlite3.Cursor:
            self.calls += 1
            if self.calls == 2:
                other.execute("DELETE FROM feed WHERE seq <= 3")
            return conn.execute(sql, params)

    try:
        page, rows = _recent_page(RecentBodies(1 << 20), hook.id, 0, 100, PrunedInBetween())  # type: ignore[arg-type]
        assert page is None and rows == []
        page, rows = _recent_page(RecentBodies(1 << 20), hook.id, 0, 100, conn)
        assert page is not None and page.count == 7 and [seq for seq, _ in rows] == list(range(4, 11))
    finally:
        conn.close()
        other.close()
