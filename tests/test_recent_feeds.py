"""Each webhook's newest feed seqs in memory: a page from them is the database's page, or no page at all."""

from __future__ import annotations

from storage._bodies import RecentBodies
from storage._feeds import RecentFeeds
from storage.base import Committed, JoinedPage, StoredEvent


def body(seq: int) -> bytes:
    return b'{"seq":%d}' % seq


def commits(*joined: tuple[int, tuple[str, ...]]) -> list[Committed]:
    return [Committed(StoredEvent(seq, f"evt_{seq}", "acct", "message.new", body(seq)), hooks) for seq, hooks in joined]


def live_feeds(head: int = 0, pruned: int = 0, **kwargs: int) -> tuple[RecentFeeds, RecentBodies]:
    bodies = RecentBodies(1 << 20)
    feeds = RecentFeeds(bodies, **kwargs)
    feeds.start(head, pruned)
    feeds.resume_at(head)
    return feeds, bodies


def publish(feeds: RecentFeeds, bodies: RecentBodies, committed: list[Committed]) -> None:
    for item in committed:
        bodies.add(item.event.seq, item.event.body)
    feeds.publish(committed)


def expected(seqs: list[int], limit: int, more: bool, pruned: int = 0) -> JoinedPage:
    return JoinedPage(b",".join(body(s) for s in seqs[:limit]), len(seqs[:limit]), seqs[:limit][-1], more, pruned)


def test_a_page_is_the_feed_of_its_webhook_only_with_has_more_and_nothing_past_the_head() -> None:
    feeds, bodies = live_feeds()
    publish(feeds, bodies, commits((1, ("a", "b")), (2, ("a",)), (3, ()), (4, ("b",)), (5, ("a",))))
    assert feeds.page("a", 0, 2) == expected([1, 2], 2, True)
    assert feeds.page("a", 2, 2) == expected([5], 2, False)
    assert feeds.page("b", 0, 10) == expected([1, 4], 10, False)
    assert feeds.page("a", 5, 10) == JoinedPage(b"", 0, None, False, 0)
    assert feeds.page("never-joined", 0, 10) == JoinedPage(b"", 0, None, False, 0)
    assert feeds.page("a", 6, 10) is None  # a cursor past what this process has heard: ask the database


def test_history_from_before_the_process_opened_the_log_comes_from_the_database_until_a_read_meets_it() -> None:
    feeds, bodies = live_feeds(head=100)
    publish(feeds, bodies, commits((101, ("a",)), (103, ("a",))))
    assert feeds.page("a", 100, 10) == expected([101, 103], 10, False)
    assert feeds.page("a", 90, 10) is None
    bodies.add_many([(95, body(95)), (98, body(98))])
    # A read that stops short of the covered range would leave a hole: it is not taken.
    feeds.learned(feeds.mark(), "a", 90, [95], 96, 103, 0)
    assert feeds.page("a", 90, 10) is None
    feeds.learned(feeds.mark(), "a", 90, [95, 98, 101], 101, 103, 0)
    assert feeds.page("a", 90, 10) == expected([95, 98, 101, 103], 10, False)
    assert feeds.page("a", 80, 10) is None


def test_pages_stop_while_other_processes_commits_may_go_unheard_and_resume_once_caught_up() -> None:
    feeds, bodies = live_feeds()
    publish(feeds, bodies, commits((1, ("a",))))
    assert feeds.page("a", 0, 10) is not None
    feeds.suspend()  # the notification connection was lost
    assert feeds.page("a", 0, 10) is None
    feeds.resume_at(3)  # listening again; the head then was 3
    assert feeds.page("a", 0, 10) is None
    publish(feeds, bodies, commits((2, ()), (3, ("a",))))
    assert feeds.page("a", 0, 10) == expected([1, 3], 10, False)


def test_a_newer_head_seen_anywhere_holds_pages_back_until_it_is_published() -> None:
    feeds, bodies = live_feeds()
    publish(feeds, bodies, commits((1, ("a",))))
    feeds.saw_head(2)  # a notification, or a database read of another webhook, saw seq 2
    assert feeds.page("a", 0, 10) is None
    publish(feeds, bodies, commits((2, ("a",))))
    assert feeds.page("a", 0, 10) == expected([1, 2], 10, False)


def test_a_cursor_below_the_watermark_is_read_from_the_database_so_its_page_says_pruned() -> None:
    feeds, bodies = live_feeds()
    publish(feeds, bodies, commits(*[(seq, ("a",)) for seq in range(1, 6)]))
    feeds.pruned_to(3)
    assert feeds.page("a", 2, 10) is None
    assert feeds.page("a", 3, 10) == expected([4, 5], 10, False, pruned=3)


def test_a_deleted_webhooks_feed_is_forgotten_and_later_entries_start_a_new_range() -> None:
    feeds, bodies = live_feeds()
    publish(feeds, bodies, commits((1, ("a",)), (2, ("a",))))
    feeds.forget("a")
    assert feeds.page("a", 0, 10) is None
    assert feeds.page("a", 2, 10) == JoinedPage(b"", 0, None, False, 0)
    publish(feeds, bodies, commits((3, ("a",))))
    assert feeds.page("a", 2, 10) == expected([3], 10, False)


def test_a_missing_body_sends_the_page_to_the_database() -> None:
    feeds, bodies = live_feeds()
    feeds.publish(commits((1, ("a",))))  # the seq is known, its body is not
    assert feeds.page("a", 0, 10) is None


def test_past_the_entry_bound_the_older_half_goes_and_what_stays_is_still_complete() -> None:
    feeds, bodies = live_feeds(max_entries=100)
    for seq in range(1, 301):
        publish(feeds, bodies, commits((seq, ("a", "b"))))
    covered = [seq for seq in range(301) if feeds.page("a", seq, 500) is not None]
    assert covered and covered[-1] == 300 and covered == list(range(covered[0], 301))
    assert feeds.page("a", covered[0], 500) == expected(list(range(covered[0] + 1, 301)), 500, False)
    assert covered[0] > 0
    assert feeds.page("never-joined", covered[0] - 1, 10) is None


def test_with_no_memory_for_bodies_nothing_is_served() -> None:
    feeds, bodies = live_feeds(enabled=False)
    publish(feeds, bodies, commits((1, ("a",))))
    assert feeds.page("a", 0, 10) is None


def test_a_read_under_way_when_a_webhook_was_deleted_teaches_nothing() -> None:
    feeds, bodies = live_feeds(head=10)
    publish(feeds, bodies, commits((11, ("a",))))
    bodies.add(5, body(5))
    mark = feeds.mark()
    feeds.forget("a")  # deleted while the read ran: the rows it found are gone
    feeds.learned(mark, "a", 0, [5, 11], 11, 11, 0)
    assert feeds.page("a", 0, 10) is None
    assert feeds.page("a", 11, 10) == JoinedPage(b"", 0, None, False, 0)
