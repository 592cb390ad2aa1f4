"""The storage contract: written once, run on every backend (see tests/backends.py)."""

from __future__ import annotations

import ast
import asyncio
import dataclasses
import hashlib
import inspect
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from uuid import uuid4

import pytest

from storage.base import (
    AccountExists,
    AccountNotMonitored,
    DeliveryAttempt,
    DeliveryState,
    EventIdConflict,
    MonitorInterval,
    NewEvent,
    Storage,
    UnknownAccount,
    UnstorableText,
    Webhook,
)

pytestmark = pytest.mark.anyio

KEY = "key_contract"


def event(event_type: str = "message.new", event_id: str | None = None) -> NewEvent:
    """A minimal event whose envelope is easy to check."""
    identifier = event_id or f"evt_{uuid4().hex}"
    head = b'{"id":"' + identifier.encode(errors="surrogatepass") + b'","seq":'
    tail = b',"type":"' + event_type.encode(errors="surrogatepass") + b'"}'
    return NewEvent(id=identifier, type=event_type, head=head, tail=tail)


def webhook(account_id: str, events: tuple[str, ...] = ("all",), *, active: bool = True) -> Webhook:
    now = time.time_ns() // 1000
    return Webhook(
        id=uuid4().hex[:24],
        account_id=account_id,
        api_key_id=KEY,
        url=None,
        secret=None,
        events=events,
        compressed_delivery=False,
        is_active=active,
        status="healthy",
        created_at=now,
        updated_at=now,
    )


async def monitored_account(storage: Storage, events: tuple[str, ...] = ("all",)) -> tuple[str, Webhook]:
    """An account with one active webhook, so appends are accepted."""
    account_id = f"acc_{uuid4().hex[:8]}"
    await storage.create_account(account_id, KEY, None, "ingest")
    hook = webhook(account_id, events)
    await storage.create_webhook(hook)
    return account_id, hook


async def feed_seqs(storage: Storage, webhook_id: str) -> list[int]:
    page = await storage.read_feed(webhook_id, 0, 10_000)
    return [item.seq for item in page.events]


async def test_append_assigns_strictly_increasing_seqs_and_stores_the_envelope(storage_backend: Storage) -> None:
    account_id, hook = await monitored_account(storage_backend)
    first = await storage_backend.append(account_id, [event(), event()])
    second = await storage_backend.append(account_id, [event()])
    seqs = [a.seq for a in (*first.appended, *second.appended)]
    assert seqs == sorted(seqs) and len(set(seqs)) == 3
    assert all(a.created for a in (*first.appended, *second.appended))
    page = await storage_backend.read_feed(hook.id, 0, 10)
    assert [e.seq for e in page.events] == seqs
    assert page.events[0].body == b'{"id":"%b","seq":%d,"type":"message.new"}' % (
        page.events[0].id.encode(),
        seqs[0],
    )
    assert [c.event.seq for c in first.committed] == seqs[:2]
    assert all(c.webhook_ids == (hook.id,) for c in first.committed)


async def test_a_repeated_id_returns_the_existing_seq_and_appends_nothing(storage_backend: Storage) -> None:
    account_id, hook = await monitored_account(storage_backend)
    first = await storage_backend.append(account_id, [event(event_id="evt_same")])
    again = await storage_backend.append(account_id, [event(event_id="evt_same"), event(event_id="evt_new")])
    assert again.appended[0].seq == first.appended[0].seq
    assert again.appended[0].created is False
    assert again.appended[1].created is True
    assert [c.event.id for c in again.committed] == ["evt_new"]
    assert len(await feed_seqs(storage_backend, hook.id)) == 2


async def test_a_repeated_id_within_one_batch_is_appended_once(storage_backend: Storage) -> None:
    account_id, hook = await monitored_account(storage_backend)
    result = await storage_backend.append(account_id, [event(event_id="evt_twice"), event(event_id="evt_twice")])
    assert result.appended[0].seq == result.appended[1].seq
    assert [a.created for a in result.appended] == [True, False]
    assert len(await feed_seqs(storage_backend, hook.id)) == 1


async def test_an_id_of_another_accounts_event_is_a_conflict_and_nothing_is_stored(storage_backend: Storage) -> None:
    first, _ = await monitored_account(storage_backend)
    second, hook = await monitored_account(storage_backend)
    await storage_backend.append(first, [event(event_id="evt_owned")])
    with pytest.raises(EventIdConflict) as caught:
        await storage_backend.append(second, [event(), event(event_id="evt_owned")])
    assert caught.value.event_id == "evt_owned"
    assert await feed_seqs(storage_backend, hook.id) == []


async def test_appending_needs_an_active_webhook_unless_told_otherwise(storage_backend: Storage) -> None:
    account_id = "acc_quiet"
    await storage_backend.create_account(account_id, KEY, None, "ingest")
    with pytest.raises(AccountNotMonitored):
        await storage_backend.append(account_id, [event()])
    stopped = webhook(account_id, active=False)
    await storage_backend.create_webhook(stopped)
    with pytest.raises(AccountNotMonitored):
        await storage_backend.append(account_id, [event()])
    result = await storage_backend.append(
        account_id, [event("webhook.test")], only_webhook_id=stopped.id, require_monitored=False
    )
    assert result.committed[0].webhook_ids == (stopped.id,)
    assert await feed_seqs(storage_backend, stopped.id) == [result.appended[0].seq]
    assert (await storage_backend.log_state()).head_seq == result.appended[0].seq


async def test_appending_to_an_unknown_account_raises(storage_backend: Storage) -> None:
    with pytest.raises(UnknownAccount):
        await storage_backend.append("acc_nobody", [event()])
    with pytest.raises(UnknownAccount):
        await storage_backend.create_webhook(webhook("acc_nobody"))


async def test_a_feed_holds_only_events_appended_while_active_and_matching(storage_backend: Storage) -> None:
    account_id, everything = await monitored_account(storage_backend)
    messages = webhook(account_id, ("message.new",))
    await storage_backend.create_webhook(messages)
    other_account, other = await monitored_account(storage_backend)

    new = (await storage_backend.append(account_id, [event("message.new")])).appended[0].seq
    truncated = (await storage_backend.append(account_id, [event("message.new.truncated")])).appended[0].seq
    email = (await storage_backend.append(account_id, [event("email.new")])).appended[0].seq
    await storage_backend.update_webhook(messages.id, is_active=False)
    while_stopped = (await storage_backend.append(account_id, [event("message.new")])).appended[0].seq
    await storage_backend.update_webhook(messages.id, is_active=True)
    await storage_backend.update_webhook(messages.id, events=("email.new",))
    after_patch = (await storage_backend.append(account_id, [event("message.new"), event("email.new")])).appended
    await storage_backend.append(other_account, [event("message.new")])

    assert await feed_seqs(storage_backend, messages.id) == [new, truncated, after_patch[1].seq]
    assert await feed_seqs(storage_backend, everything.id) == [
        new,
        truncated,
        email,
        while_stopped,
        after_patch[0].seq,
        after_patch[1].seq,
    ]
    assert len(await feed_seqs(storage_backend, other.id)) == 1


async def test_a_test_event_joins_only_the_named_webhook(storage_backend: Storage) -> None:
    account_id, first = await monitored_account(storage_backend)
    second = webhook(account_id)
    await storage_backend.create_webhook(second)
    result = await storage_backend.append(account_id, [event("webhook.test")], only_webhook_id=second.id)
    assert await feed_seqs(storage_backend, second.id) == [result.appended[0].seq]
    assert await feed_seqs(storage_backend, first.id) == []


async def test_read_feed_pages_with_has_more(storage_backend: Storage) -> None:
    account_id, hook = await monitored_account(storage_backend)
    seqs = [a.seq for a in (await storage_backend.append(account_id, [event() for _ in range(25)])).appended]
    seen: list[int] = []
    cursor = 0
    while True:
        page = await storage_backend.read_feed(hook.id, cursor, 10)
        seen.extend(e.seq for e in page.events)
        if not page.has_more:
            break
        assert len(page.events) == 10
        cursor = page.events[-1].seq
    assert seen == seqs
    last = await storage_backend.read_feed(hook.id, seqs[-1], 10)
    assert last.events == () and last.has_more is False
    exact = await storage_backend.read_feed(hook.id, seqs[-11], 10)
    assert len(exact.events) == 10 and exact.has_more is False


async def test_prune_deletes_old_events_in_batches_and_moves_the_watermark(storage_backend: Storage) -> None:
    assert await storage_backend.prune(time.time_ns() // 1000, 3) == 0  # an empty log has nothing due
    account_id, hook = await monitored_account(storage_backend)
    old = [a.seq for a in (await storage_backend.append(account_id, [event() for _ in range(5)])).appended]
    await asyncio.sleep(0.01)
    cutoff = time.time_ns() // 1000
    await asyncio.sleep(0.01)
    young = (await storage_backend.append(account_id, [event()])).appended[0].seq
    assert await storage_backend.prune(cutoff, 3) == 3
    assert (await storage_backend.log_state()).pruned_through == old[2]
    assert await storage_backend.prune(cutoff, 3) == 2
    assert await storage_backend.prune(cutoff, 3) == 0
    state = await storage_backend.log_state()
    assert state.pruned_through == old[-1]
    assert state.head_seq == young
    assert await feed_seqs(storage_backend, hook.id) == [young]


async def test_pruning_the_newest_event_never_lets_its_seq_be_reused(storage_backend: Storage) -> None:
    account_id, hook = await monitored_account(storage_backend)
    gone = (await storage_backend.append(account_id, [event()])).appended[0].seq
    await storage_backend.prune(time.time_ns() // 1000 + 1, 100)
    fresh = (await storage_backend.append(account_id, [event()])).appended[0].seq
    assert fresh > gone
    assert await feed_seqs(storage_backend, hook.id) == [fresh]


async def test_log_state_keeps_its_epoch_and_head_across_reopen(
    storage_backend: Storage, same_backend: Callable[[], Storage]
) -> None:
    empty = await storage_backend.log_state()
    assert empty.head_seq == 0 and empty.pruned_through == 0 and len(empty.epoch) >= 8
    account_id, hook = await monitored_account(storage_backend)
    result = await storage_backend.append(account_id, [event(), event()])
    key = await storage_backend.create_api_key("key_reopen", "reopen", b"h" * 32, "hk_reopen")
    await storage_backend.close()

    reopened = same_backend()
    await reopened.open()
    try:
        state = await reopened.log_state()
        assert state.epoch == empty.epoch
        assert state.head_seq == result.appended[-1].seq
        assert await feed_seqs(reopened, hook.id) == [a.seq for a in result.appended]
        assert await reopened.get_webhook(hook.id) == hook
        assert (await reopened.api_key_by_hash(b"h" * 32)) == key
        assert (await reopened.get_account(account_id)) is not None
        again = await reopened.append(account_id, [event(event_id=result.appended[0].id)])
        assert again.appended[0].created is False
    finally:
        await reopened.close()  # the fixture closes the first instance again: close must be idempotent


async def test_two_hundred_concurrent_appends_get_distinct_contiguous_seqs(storage_backend: Storage) -> None:
    account_id, hook = await monitored_account(storage_backend)
    results = await asyncio.gather(*(storage_backend.append(account_id, [event()]) for _ in range(200)))
    seqs = sorted(r.appended[0].seq for r in results)
    assert seqs == list(range(seqs[0], seqs[0] + 200))
    assert await feed_seqs(storage_backend, hook.id) == seqs


async def test_a_failing_append_in_a_group_does_not_undo_the_others(storage_backend: Storage) -> None:
    account_id, hook = await monitored_account(storage_backend)
    await storage_backend.create_account("acc_idle", KEY, None, "ingest")
    outcomes = await asyncio.gather(
        *(storage_backend.append(account_id if i % 2 else "acc_idle", [event()]) for i in range(40)),
        return_exceptions=True,
    )
    assert sum(isinstance(o, AccountNotMonitored) for o in outcomes) == 20
    assert len(await feed_seqs(storage_backend, hook.id)) == 20


async def test_accounts_are_created_listed_and_deleted_with_their_webhooks(storage_backend: Storage) -> None:
    account = await storage_backend.create_account("acc_a", KEY, "Alice", "ingest")
    assert account.active_webhooks == 0 and account.name == "Alice"
    with pytest.raises(AccountExists):
        await storage_backend.create_account("acc_a", "key_other", None, "ingest")
    await storage_backend.create_account("acc_b", "key_other", None, "demo")
    assert [a.id for a in await storage_backend.list_accounts(KEY)] == ["acc_a"]
    hooks = [webhook("acc_a"), webhook("acc_a", active=False)]
    for hook in hooks:
        await storage_backend.create_webhook(hook)
    found = await storage_backend.get_account("acc_a")
    assert found is not None and found.active_webhooks == 1
    deleted = await storage_backend.delete_account("acc_a")
    assert sorted(h.id for h in deleted) == sorted(h.id for h in hooks)
    assert await storage_backend.get_account("acc_a") is None
    assert await storage_backend.get_webhook(hooks[0].id) is None
    assert await storage_backend.list_accounts(KEY) == []


async def test_webhooks_are_created_updated_counted_and_deleted(storage_backend: Storage) -> None:
    await storage_backend.create_account("acc_w", KEY, None, "ingest")
    first, second = webhook("acc_w"), webhook("acc_w", ("message.new",))
    assert (await storage_backend.create_webhook(first)).account_active_webhooks == 1
    assert (await storage_backend.create_webhook(second)).account_active_webhooks == 2
    assert [h.id for h in await storage_backend.list_webhooks(KEY)] == [first.id, second.id]
    assert [h.id for h in await storage_backend.list_webhooks(KEY, "acc_w")] == [first.id, second.id]
    assert await storage_backend.list_webhooks("key_other") == []

    stopped = await storage_backend.update_webhook(first.id, is_active=False)
    assert stopped is not None and stopped.webhook.is_active is False and stopped.account_active_webhooks == 1
    assert [h.id for h in await storage_backend.active_webhooks()] == [second.id]
    changed = await storage_backend.update_webhook(second.id, events=("email.new",), status="failing")
    assert changed is not None
    assert changed.webhook.events == ("email.new",) and changed.webhook.status == "failing"
    assert changed.webhook.url is None and changed.webhook.is_active is True
    assert await storage_backend.update_webhook("0" * 24, is_active=True) is None

    gone = await storage_backend.delete_webhook(second.id)
    assert gone is not None and gone.account_active_webhooks == 0
    assert await storage_backend.get_webhook(second.id) is None
    assert await storage_backend.delete_webhook(second.id) is None


async def test_api_keys_are_found_by_hash_until_revoked(storage_backend: Storage) -> None:
    digest = hashlib.sha256(b"hk_secret").digest()
    key = await storage_backend.create_api_key("key_1", "one", digest, "hk_secret")
    await storage_backend.create_api_key("key_2", "two", hashlib.sha256(b"hk_other").digest(), "hk_other")
    assert await storage_backend.api_key_by_hash(digest) == key
    assert await storage_backend.api_key_by_hash(hashlib.sha256(b"hk_wrong").digest()) is None
    assert {k.id for k in await storage_backend.list_api_keys()} == {"key_1", "key_2"}
    revoked = await storage_backend.revoke_api_key("key_1")
    assert revoked is not None and revoked.revoked_at is not None
    assert await storage_backend.api_key_by_hash(digest) is None
    assert await storage_backend.revoke_api_key("key_unknown") is None


async def test_ping_succeeds_on_an_open_backend(storage_backend: Storage) -> None:
    await storage_backend.ping()


async def test_a_closed_instance_can_be_opened_again(storage_backend: Storage) -> None:
    account_id, hook = await monitored_account(storage_backend)
    await storage_backend.close()
    await storage_backend.open()
    result = await storage_backend.append(account_id, [event()])
    assert await feed_seqs(storage_backend, hook.id) == [result.appended[0].seq]


async def test_subscribers_hear_each_commit_in_seq_order_with_the_webhooks_it_joined(
    storage_backend: Storage,
) -> None:
    heard: list[tuple[list[int], int, list[tuple[str, ...]]]] = []
    storage_backend.subscribe(
        lambda committed, head: heard.append(
            ([c.event.seq for c in committed], head, [c.webhook_ids for c in committed])
        )
    )
    account_id, hook = await monitored_account(storage_backend, ("message.new",))
    result = await storage_backend.append(account_id, [event("message.new"), event("email.new")])
    seqs = [a.seq for a in result.appended]
    assert heard == [(seqs, seqs[-1], [(hook.id,), ()])]
    await storage_backend.append(account_id, [event(event_id=result.appended[0].id)])
    assert len(heard) == 1  # nothing new was committed


async def test_a_joined_page_is_the_same_page_as_read_feed_with_its_bodies_joined(storage_backend: Storage) -> None:
    account_id, hook = await monitored_account(storage_backend, ("message.new",))
    await storage_backend.append(account_id, [event("message.new" if n % 3 else "email.new") for n in range(250)])
    for after, limit in ((0, 100), (0, 1000), (57, 7), (10_000_000, 100)):
        page = await storage_backend.read_feed(hook.id, after, limit)
        joined = await storage_backend.read_feed_joined(hook.id, after, limit)
        assert joined.joined == b",".join(e.body for e in page.events)
        assert joined.count == len(page.events)
        assert joined.last_seq == (page.events[-1].seq if page.events else None)
        assert joined.has_more is page.has_more
    full = await storage_backend.read_feed(hook.id, 0, 10_000)
    last_page = await storage_backend.read_feed_joined(hook.id, full.events[-11].seq, 10)
    assert last_page.count == 10 and last_page.has_more is False


@pytest.mark.parametrize("filters", [("all",), ("message.new",)])
async def test_another_instance_serves_the_same_pages_of_events_it_did_not_commit(
    storage_backend: Storage, same_backend: Callable[[], Storage], filters: tuple[str, ...]
) -> None:
    """Pages near the head may come from memory: on an instance that heard of the commits, or read them."""
    other = same_backend()
    await other.open()
    try:
        account_id, hook = await monitored_account(storage_backend, filters)
        for _ in range(5):
            await storage_backend.append(
                account_id, [event("message.new" if n % 4 else "email.new") for n in range(30)]
            )
        truth = await storage_backend.read_feed(hook.id, 0, 10_000)
        deadline = time.monotonic() + 10
        while (await other.read_feed_joined(hook.id, 0, 1000)).count < len(truth.events):
            assert time.monotonic() < deadline, "the other instance never saw the commits"
            await asyncio.sleep(0.05)
        for after, limit in ((0, 100), (0, 7), (truth.events[40].seq, 50), (truth.events[-3].seq, 100)):
            expected = [e for e in truth.events if e.seq > after][:limit]
            for _ in range(2):  # the second read may come from memory
                page = await other.read_feed_joined(hook.id, after, limit)
                assert page.joined == b",".join(e.body for e in expected)
                assert page.last_seq == expected[-1].seq
                assert page.has_more is (expected[-1].seq != truth.events[-1].seq)
    finally:
        await other.close()


async def heard_through(storage: Storage, webhook_id: str, seq: int) -> None:
    """Wait until `storage` serves the feed up to `seq`: it has heard of that commit (or read it)."""
    deadline = time.monotonic() + 10
    while (await storage.read_feed_joined(webhook_id, seq - 1, 1)).count < 1:
        assert time.monotonic() < deadline, f"seq {seq} never reached the other instance"
        await asyncio.sleep(0.02)


async def same_pages(reader: Storage, truth: Storage, webhook_id: str, limit: int) -> None:
    """Every page of the reader, read twice (the second from memory), equals the writer's read of the database."""
    everything = (await truth.read_feed(webhook_id, 0, 100_000)).events
    for cursor in [0, *[e.seq for e in everything]]:
        expected = [e for e in everything if e.seq > cursor][:limit]
        for _ in range(2):
            page = await reader.read_feed_joined(webhook_id, cursor, limit)
            assert page.joined == b",".join(e.body for e in expected), f"page after {cursor}"
            assert page.last_seq == (expected[-1].seq if expected else None)
            assert page.has_more is (bool(expected) and expected[-1].seq != everything[-1].seq)


async def test_pages_of_an_instance_that_only_heard_of_the_commits_have_no_gap_and_no_stale_event(
    storage_backend: Storage, same_backend: Callable[[], Storage]
) -> None:
    """One instance writes, another reads: its pages, from memory or not, are the database's, filters included."""
    reader = same_backend()
    await reader.open()
    try:
        account_id, everything = await monitored_account(storage_backend)
        filtered = (await storage_backend.create_webhook(webhook(account_id, ("message.new",)))).webhook
        # Read before the commits, so the reader's memory starts before them and must grow without holes.
        assert (await reader.read_feed_joined(filtered.id, 0, 10)).count == 0
        for round_ in range(4):
            result = await storage_backend.append(
                account_id, [event("message.new" if n % 3 else "email.new") for n in range(37)]
            )
            await heard_through(reader, everything.id, result.appended[-1].seq)
            for hook in (everything, filtered):
                await same_pages(reader, storage_backend, hook.id, 10 + round_)
        # A stopped webhook's feed stays as it was; a deleted one's is gone on the reader too.
        await storage_backend.update_webhook(filtered.id, is_active=False)
        last = (await storage_backend.append(account_id, [event("message.new")])).appended[-1].seq
        await heard_through(reader, everything.id, last)
        await same_pages(reader, storage_backend, filtered.id, 25)
        await storage_backend.delete_webhook(filtered.id)
        deadline = time.monotonic() + 10
        while (await reader.read_feed_joined(filtered.id, 0, 100)).count:
            assert time.monotonic() < deadline, "the reader still serves a deleted webhook's feed"
            await asyncio.sleep(0.02)
    finally:
        await reader.close()


async def test_a_reader_paging_while_another_instance_appends_sees_every_event_once_in_order(
    storage_backend: Storage, same_backend: Callable[[], Storage]
) -> None:
    reader = same_backend()
    await reader.open()
    try:
        account_id, hook = await monitored_account(storage_backend)
        done = asyncio.Event()

        async def write() -> None:
            for _ in range(40):
                await storage_backend.append(account_id, [event() for _ in range(7)])
                await asyncio.sleep(0.002)
            done.set()

        seen: list[int] = []
        writer = asyncio.create_task(write())
        cursor = 0
        while not done.is_set() or (await reader.read_feed_joined(hook.id, cursor, 1)).count:
            page = await reader.read_feed_joined(hook.id, cursor, 5)
            if page.last_seq is not None:
                seen += [e.seq for e in (await storage_backend.read_feed(hook.id, cursor, page.count)).events]
                assert seen[-1] == page.last_seq
                cursor = page.last_seq
            else:
                await asyncio.sleep(0.001)
        await writer
        assert seen == await feed_seqs(storage_backend, hook.id)
    finally:
        await reader.close()


async def test_after_a_prune_by_another_instance_a_page_below_the_watermark_says_so(
    storage_backend: Storage, same_backend: Callable[[], Storage]
) -> None:
    reader = same_backend()
    await reader.open()
    try:
        account_id, hook = await monitored_account(storage_backend)
        old = (await storage_backend.append(account_id, [event() for _ in range(6)])).appended
        await heard_through(reader, hook.id, old[-1].seq)
        await same_pages(reader, storage_backend, hook.id, 4)
        await asyncio.sleep(0.01)
        cutoff = time.time_ns() // 1000
        await asyncio.sleep(0.01)
        young = (await storage_backend.append(account_id, [event()])).appended[0].seq
        assert await storage_backend.prune(cutoff, 4) == 4
        deadline = time.monotonic() + 10
        while (page := await reader.read_feed_joined(hook.id, 0, 100)).pruned_through < old[3].seq:
            # Until the reader hears of it, a page may still hold the pruned events, but it never skips one.
            assert page.count == 7 and time.monotonic() < deadline
            await asyncio.sleep(0.02)
        rest = (await storage_backend.read_feed(hook.id, 0, 100)).events
        assert page.joined == b",".join(e.body for e in rest) and rest[-1].seq == young
        assert (await reader.read_feed_joined(hook.id, old[3].seq, 100)).count == 3
    finally:
        await reader.close()


async def test_another_instance_hears_which_webhooks_were_changed_and_the_changer_does_not(
    storage_backend: Storage, same_backend: Callable[[], Storage]
) -> None:
    other = same_backend()
    heard: list[str | None] = []
    own: list[str | None] = []
    other.watch_webhooks(heard.append)
    storage_backend.watch_webhooks(own.append)
    published: list[int] = []
    other.subscribe(lambda committed, head: published.append(head))
    await other.open()
    try:
        account_id, hook = await monitored_account(storage_backend)
        # Once it has heard of a commit, the other instance listens: nothing after can go unheard.
        seq = (await storage_backend.append(account_id, [event()])).appended[0].seq
        await heard_through(other, hook.id, seq)
        deadline = time.monotonic() + 10
        while seq not in published:
            assert time.monotonic() < deadline, "the other instance never heard of the commit"
            await asyncio.sleep(0.01)
        second = (await storage_backend.create_webhook(webhook(account_id))).webhook
        await storage_backend.update_webhook(hook.id, is_active=False)
        await storage_backend.update_webhook(second.id, events=("message.new",))
        await storage_backend.delete_webhook(hook.id)
        await storage_backend.delete_account(account_id)
        deadline = time.monotonic() + 10
        while [h for h in heard if h is not None] != [hook.id, second.id, hook.id, second.id]:
            assert time.monotonic() < deadline, f"heard only {heard}"
            await asyncio.sleep(0.01)
        assert [h for h in own if h is not None] == []
    finally:
        await other.close()


# Monitors. Lease times are whatever the caller says they are: storage only compares them.

START, LATER = 1_000, 2_000  # metering-clock µs
NOW, UNTIL = 10_000, 20_000  # wall-clock µs of a lease


async def monitored_by(storage: Storage, owner: str, *, at: int = START, until: int = UNTIL) -> str:
    """A new account whose monitor lease `owner` has just taken."""
    account_id = f"acc_{uuid4().hex[:8]}"
    await storage.create_account(account_id, KEY, None, "ingest")
    assert await storage.start_monitor(account_id, KEY, owner, at, NOW, until)
    return account_id


async def test_start_monitor_takes_a_free_lease_and_opens_an_interval(storage_backend: Storage) -> None:
    account_id = await monitored_by(storage_backend, "host:1:a")
    lease = await storage_backend.monitor_lease(account_id)
    assert lease is not None
    assert (lease.owner, lease.expires_at, lease.status, lease.reason) == ("host:1:a", UNTIL, "running", None)
    assert await storage_backend.monitor_intervals(account_id, KEY) == [MonitorInterval(START, START, None)]


async def test_start_monitor_refuses_a_live_lease_of_another_owner(storage_backend: Storage) -> None:
    account_id = await monitored_by(storage_backend, "host:1:a")
    assert not await storage_backend.start_monitor(account_id, KEY, "host:2:b", LATER, UNTIL - 1, UNTIL + 500)
    lease = await storage_backend.monitor_lease(account_id)
    assert lease is not None and lease.owner == "host:1:a" and lease.expires_at == UNTIL
    assert await storage_backend.monitor_intervals(account_id, KEY) == [MonitorInterval(START, START, None)]


async def test_the_holder_starting_again_renews_its_lease_and_keeps_its_one_open_interval(
    storage_backend: Storage,
) -> None:
    account_id = await monitored_by(storage_backend, "host:1:a")
    assert await storage_backend.start_monitor(account_id, KEY, "host:1:a", LATER, NOW + 1, UNTIL + 1)
    lease = await storage_backend.monitor_lease(account_id)
    assert lease is not None and lease.expires_at == UNTIL + 1
    assert await storage_backend.monitor_intervals(account_id, KEY) == [MonitorInterval(START, START, None)]


async def test_an_expired_lease_is_taken_over_and_the_old_interval_ends_at_its_last_checkpoint(
    storage_backend: Storage,
) -> None:
    account_id = await monitored_by(storage_backend, "host:1:a")
    assert await storage_backend.checkpoint_monitors("host:1:a", 1_500, UNTIL) == {account_id}
    # At exactly its expiry the lease is no longer live.
    assert await storage_backend.start_monitor(account_id, KEY, "host:2:b", 3_000, UNTIL, UNTIL + 10_000)
    lease = await storage_backend.monitor_lease(account_id)
    assert lease is not None and lease.owner == "host:2:b" and lease.expires_at == UNTIL + 10_000
    assert await storage_backend.monitor_intervals(account_id, KEY) == [
        MonitorInterval(START, 1_500, 1_500),
        MonitorInterval(3_000, 3_000, None),
    ]
    assert await storage_backend.checkpoint_monitors("host:1:a", 4_000, UNTIL + 20_000) == set()


async def test_the_lease_of_a_dead_process_on_this_host_is_taken_at_once_by_naming_its_expiry(
    storage_backend: Storage,
) -> None:
    """The app takes over from a holder it knows is dead by passing the `expires_at` it read as `lease_now`."""
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    with pytest.raises(ProcessLookupError):  # how the app knows that holder is dead
        os.kill(process.pid, 0)
    dead = f"{socket.gethostname()}:{process.pid}:0dead"
    account_id = await monitored_by(storage_backend, dead, until=NOW + 10**9)
    me = f"{socket.gethostname()}:{os.getpid()}:0live"
    assert not await storage_backend.start_monitor(account_id, KEY, me, LATER, NOW, NOW + 30_000)
    lease = await storage_backend.monitor_lease(account_id)
    assert lease is not None and lease.owner == dead
    assert await storage_backend.start_monitor(account_id, KEY, me, LATER, lease.expires_at, NOW + 30_000)
    taken = await storage_backend.monitor_lease(account_id)
    assert taken is not None and taken.owner == me and taken.expires_at == NOW + 30_000
    assert await storage_backend.monitor_intervals(account_id, KEY) == [
        MonitorInterval(START, START, START),
        MonitorInterval(LATER, LATER, None),
    ]


async def test_a_takeover_by_a_stale_expiry_fails_once_the_holder_has_renewed(storage_backend: Storage) -> None:
    account_id = await monitored_by(storage_backend, "host:1:a")
    read = await storage_backend.monitor_lease(account_id)
    assert read is not None
    await storage_backend.checkpoint_monitors("host:1:a", LATER, UNTIL + 5_000)
    assert not await storage_backend.start_monitor(account_id, KEY, "host:2:b", LATER, read.expires_at, UNTIL * 2)
    lease = await storage_backend.monitor_lease(account_id)
    assert lease is not None and lease.owner == "host:1:a"


async def test_of_many_processes_racing_for_a_free_lease_exactly_one_takes_it(storage_backend: Storage) -> None:
    account_id = f"acc_{uuid4().hex[:8]}"
    await storage_backend.create_account(account_id, KEY, None, "ingest")
    owners = [f"host:{n}:x" for n in range(20)]
    taken = await asyncio.gather(
        *(storage_backend.start_monitor(account_id, KEY, owner, START, NOW, UNTIL) for owner in owners)
    )
    assert sum(taken) == 1
    lease = await storage_backend.monitor_lease(account_id)
    assert lease is not None and lease.owner == owners[taken.index(True)]
    assert len(await storage_backend.monitor_intervals(account_id, KEY)) == 1


async def test_checkpoint_monitors_renews_only_the_owners_leases_and_never_moves_a_checkpoint_back(
    storage_backend: Storage,
) -> None:
    mine = {await monitored_by(storage_backend, "host:1:a") for _ in range(2)}
    other = await monitored_by(storage_backend, "host:2:b")
    assert await storage_backend.checkpoint_monitors("host:1:a", LATER, UNTIL + 1) == mine
    assert await storage_backend.checkpoint_monitors("host:1:a", LATER - 500, UNTIL + 2) == mine
    for account_id in mine:
        lease = await storage_backend.monitor_lease(account_id)
        assert lease is not None and lease.expires_at == UNTIL + 2
        assert await storage_backend.monitor_intervals(account_id, KEY) == [MonitorInterval(START, LATER, None)]
    lease = await storage_backend.monitor_lease(other)
    assert lease is not None and lease.expires_at == UNTIL
    assert await storage_backend.monitor_intervals(other, KEY) == [MonitorInterval(START, START, None)]
    assert await storage_backend.checkpoint_monitors("host:9:nobody", LATER, UNTIL) == set()


async def test_stop_monitor_closes_the_owners_interval_and_releases_its_lease(storage_backend: Storage) -> None:
    account_id = await monitored_by(storage_backend, "host:1:a")
    await storage_backend.checkpoint_monitors("host:1:a", LATER, UNTIL)
    await storage_backend.stop_monitor(account_id, "host:2:b", 5_000)  # not its lease: nothing happens
    assert await storage_backend.monitor_lease(account_id) is not None
    assert await storage_backend.monitor_intervals(account_id, KEY) == [MonitorInterval(START, LATER, None)]
    await storage_backend.stop_monitor(account_id, "host:1:a", LATER - 100)  # never before its checkpoint
    assert await storage_backend.monitor_lease(account_id) is None
    assert await storage_backend.monitor_intervals(account_id, KEY) == [MonitorInterval(START, LATER, LATER)]
    assert await storage_backend.start_monitor(account_id, KEY, "host:2:b", 6_000, NOW, UNTIL)
    await storage_backend.stop_monitor(account_id, "host:2:b", 7_000)
    assert (await storage_backend.monitor_intervals(account_id, KEY))[-1] == MonitorInterval(6_000, 7_000, 7_000)


async def test_set_monitor_status_is_recorded_for_the_holder_only(storage_backend: Storage) -> None:
    account_id = await monitored_by(storage_backend, "host:1:a")
    await storage_backend.set_monitor_status(account_id, "host:1:a", "errored", "connector: token expired")
    await storage_backend.set_monitor_status(account_id, "host:2:b", "running", None)
    lease = await storage_backend.monitor_lease(account_id)
    assert lease is not None and (lease.status, lease.reason) == ("errored", "connector: token expired")
    await storage_backend.set_monitor_status(account_id, "host:1:a", "running", None)
    lease = await storage_backend.monitor_lease(account_id)
    assert lease is not None and (lease.status, lease.reason) == ("running", None)


async def test_monitor_lease_is_none_for_an_account_never_monitored(storage_backend: Storage) -> None:
    await storage_backend.create_account("acc_unwatched", KEY, None, "ingest")
    assert await storage_backend.monitor_lease("acc_unwatched") is None
    assert await storage_backend.monitor_lease("acc_nobody") is None


async def test_close_stale_intervals_closes_those_without_a_live_lease_and_deletes_expired_leases(
    storage_backend: Storage,
) -> None:
    expiring = await monitored_by(storage_backend, "host:1:a", until=NOW + 100)
    await storage_backend.checkpoint_monitors("host:1:a", LATER, NOW + 100)
    live = await monitored_by(storage_backend, "host:2:b", until=NOW + 10_000)
    assert await storage_backend.close_stale_intervals(NOW + 50) == 0
    assert await storage_backend.close_stale_intervals(NOW + 100) == 1
    assert await storage_backend.monitor_lease(expiring) is None
    assert await storage_backend.monitor_intervals(expiring, KEY) == [MonitorInterval(START, LATER, LATER)]
    assert await storage_backend.monitor_lease(live) is not None
    assert await storage_backend.monitor_intervals(live, KEY) == [MonitorInterval(START, START, None)]
    assert await storage_backend.close_stale_intervals(NOW + 100) == 0


async def test_monitor_intervals_are_the_keys_own_oldest_first_and_outlive_the_account(
    storage_backend: Storage,
) -> None:
    account_id = await monitored_by(storage_backend, "host:1:a")
    await storage_backend.stop_monitor(account_id, "host:1:a", LATER)
    assert await storage_backend.start_monitor(account_id, KEY, "host:1:a", 3_000, NOW, UNTIL)
    await storage_backend.delete_account(account_id)
    expected = [MonitorInterval(START, LATER, LATER), MonitorInterval(3_000, 3_000, None)]
    assert await storage_backend.monitor_intervals(account_id, KEY) == expected
    assert await storage_backend.monitor_intervals(account_id, "key_other") == []


# Custom-mode delivery


def attempt(hook: Webhook, seq: int, number: int = 1, outcome: str = "delivered", at: int = 0) -> DeliveryAttempt:
    """An attempt at delivering the event at `seq` to `hook`."""
    return DeliveryAttempt(
        webhook_id=hook.id,
        seq=seq,
        event_id=f"evt_{seq}",
        attempt=number,
        outcome=outcome,
        status_code=200 if outcome == "delivered" else 503,
        latency_ms=1.5,
        error=None if outcome == "delivered" else "HTTP 503",
        created_at=at or time.time_ns() // 1000,
    )


async def delivering(storage: Storage, count: int) -> tuple[Webhook, list[int]]:
    """A webhook with `count` events in its feed, none delivered yet."""
    account_id, hook = await monitored_account(storage)
    result = await storage.append(account_id, [event() for _ in range(count)])
    return hook, [a.seq for a in result.appended]


async def test_delivery_state_of_a_fresh_webhook_is_cursor_zero_and_not_failing(storage_backend: Storage) -> None:
    hook, _ = await delivering(storage_backend, 1)
    assert await storage_backend.delivery_state(hook.id) == DeliveryState(0, None)
    assert await storage_backend.delivery_state("0" * 24) == DeliveryState(0, None)


async def test_a_delivered_first_attempt_moves_the_cursor_and_leaves_nothing_pending(
    storage_backend: Storage,
) -> None:
    hook, seqs = await delivering(storage_backend, 2)
    assert await storage_backend.record_attempt(attempt(hook, seqs[0]), from_cursor=0)
    assert await storage_backend.record_attempt(attempt(hook, seqs[1]), from_cursor=seqs[0])
    assert await storage_backend.delivery_state(hook.id) == DeliveryState(seqs[1], None)
    assert await storage_backend.next_delivery_due(hook.id) is None
    assert [a.seq for a in await storage_backend.list_attempts(hook.id, None, 10)] == [seqs[1], seqs[0]]


async def test_a_retrying_first_attempt_leaves_its_event_pending_until_due(storage_backend: Storage) -> None:
    hook, seqs = await delivering(storage_backend, 1)
    assert await storage_backend.record_attempt(
        attempt(hook, seqs[0], outcome="retrying"), from_cursor=0, next_attempt_at=5_000
    )
    assert (await storage_backend.delivery_state(hook.id)).cursor_seq == seqs[0]
    assert await storage_backend.next_delivery_due(hook.id) == 5_000
    assert await storage_backend.due_deliveries(hook.id, 4_999, 10) == []
    (due,) = await storage_backend.due_deliveries(hook.id, 5_000, 10)
    assert (due.event.seq, due.attempts, due.next_attempt_at) == (seqs[0], 1, 5_000)
    page = await storage_backend.read_feed(hook.id, 0, 1)
    assert due.event == page.events[0]


async def test_due_deliveries_come_in_seq_order_up_to_the_limit(storage_backend: Storage) -> None:
    hook, seqs = await delivering(storage_backend, 4)
    cursor = 0
    for seq, due_at in zip(seqs, (400, 100, 300, 200), strict=True):
        assert await storage_backend.record_attempt(
            attempt(hook, seq, outcome="retrying"), from_cursor=cursor, next_attempt_at=due_at
        )
        cursor = seq
    assert [d.event.seq for d in await storage_backend.due_deliveries(hook.id, 300, 10)] == seqs[1:]
    assert [d.event.seq for d in await storage_backend.due_deliveries(hook.id, 1_000, 2)] == seqs[:2]
    assert await storage_backend.next_delivery_due(hook.id) == 100


async def test_a_retry_reschedules_its_pending_event_and_a_final_outcome_removes_it(
    storage_backend: Storage,
) -> None:
    hook, seqs = await delivering(storage_backend, 2)
    await storage_backend.record_attempt(attempt(hook, seqs[0], outcome="retrying"), from_cursor=0, next_attempt_at=10)
    await storage_backend.record_attempt(
        attempt(hook, seqs[1], outcome="retrying"), from_cursor=seqs[0], next_attempt_at=20
    )
    assert await storage_backend.record_attempt(
        attempt(hook, seqs[0], 2, "retrying"), from_cursor=None, next_attempt_at=50
    )
    assert [
        (d.event.seq, d.attempts, d.next_attempt_at) for d in await storage_backend.due_deliveries(hook.id, 99, 9)
    ] == [
        (seqs[0], 2, 50),
        (seqs[1], 1, 20),
    ]
    assert await storage_backend.record_attempt(attempt(hook, seqs[0], 3, "delivered"), from_cursor=None)
    assert await storage_backend.record_attempt(attempt(hook, seqs[1], 2, "failed"), from_cursor=None)
    assert await storage_backend.due_deliveries(hook.id, 99, 9) == []
    assert await storage_backend.next_delivery_due(hook.id) is None
    assert (await storage_backend.delivery_state(hook.id)).cursor_seq == seqs[1]


async def test_of_two_recorders_racing_from_the_same_cursor_exactly_one_moves_it(storage_backend: Storage) -> None:
    hook, seqs = await delivering(storage_backend, 1)
    for _ in range(3):
        won = await asyncio.gather(
            storage_backend.record_attempt(attempt(hook, seqs[0]), from_cursor=0),
            storage_backend.record_attempt(attempt(hook, seqs[0]), from_cursor=0),
        )
        assert sorted(won) == [False, True]
        assert (await storage_backend.delivery_state(hook.id)).cursor_seq == seqs[0]
        await storage_backend.recover_deliveries(hook.id, 0)
    won = await asyncio.gather(
        *(
            storage_backend.record_attempt(attempt(hook, seqs[0], outcome="retrying"), from_cursor=0, next_attempt_at=9)
            for _ in range(10)
        )
    )
    assert sum(won) == 1
    assert (await storage_backend.delivery_state(hook.id)).cursor_seq == seqs[0]
    assert [d.attempts for d in await storage_backend.due_deliveries(hook.id, 9, 10)] == [1]
    # Every attempt is logged, the losers' too.
    assert len(await storage_backend.list_attempts(hook.id, None, 100)) == 16


async def test_a_first_attempt_after_a_recover_moved_the_cursor_does_not_move_it(storage_backend: Storage) -> None:
    hook, seqs = await delivering(storage_backend, 3)
    assert await storage_backend.record_attempt(attempt(hook, seqs[0]), from_cursor=0)
    assert await storage_backend.record_attempt(attempt(hook, seqs[1]), from_cursor=seqs[0])
    await storage_backend.recover_deliveries(hook.id, 0)
    # A delivery read after seqs[1] before the recover finishes now: the recover wins.
    assert not await storage_backend.record_attempt(
        attempt(hook, seqs[2], outcome="retrying"), from_cursor=seqs[1], next_attempt_at=5
    )
    assert (await storage_backend.delivery_state(hook.id)).cursor_seq == 0
    assert await storage_backend.next_delivery_due(hook.id) is None


async def test_list_attempts_pages_newest_first_by_id(storage_backend: Storage) -> None:
    hook, seqs = await delivering(storage_backend, 5)
    cursor = 0
    for seq in seqs:
        await storage_backend.record_attempt(attempt(hook, seq), from_cursor=cursor)
        cursor = seq
    other, other_seqs = await delivering(storage_backend, 1)
    await storage_backend.record_attempt(attempt(other, other_seqs[0]), from_cursor=0)
    pages: list[list[int]] = []
    before: int | None = None
    while True:
        page = await storage_backend.list_attempts(hook.id, before, 2)
        if not page:
            break
        pages.append([a.seq for a in page])
        ids = [a.id for a in page]
        assert ids == sorted(ids, reverse=True) and all(ids)
        before = page[-1].id
    assert pages == [[seqs[4], seqs[3]], [seqs[2], seqs[1]], [seqs[0]]]
    newest = (await storage_backend.list_attempts(hook.id, None, 1))[0]
    assert (newest.webhook_id, newest.event_id, newest.outcome, newest.status_code) == (
        hook.id,
        f"evt_{seqs[4]}",
        "delivered",
        200,
    )
    assert newest.latency_ms == 1.5 and newest.error is None


async def test_attempt_counts_counts_attempts_and_failures_since_a_time(storage_backend: Storage) -> None:
    hook, seqs = await delivering(storage_backend, 4)
    outcomes = [("retrying", 100), ("failed", 200), ("delivered", 300), ("retrying", 400)]
    cursor = 0
    for seq, (outcome, at) in zip(seqs, outcomes, strict=True):
        await storage_backend.record_attempt(
            attempt(hook, seq, outcome=outcome, at=at), from_cursor=cursor, next_attempt_at=at
        )
        cursor = seq
    assert await storage_backend.attempt_counts(hook.id, 0) == (4, 3)
    assert await storage_backend.attempt_counts(hook.id, 200) == (3, 2)
    assert await storage_backend.attempt_counts(hook.id, 301) == (1, 1)
    assert await storage_backend.attempt_counts(hook.id, 401) == (0, 0)
    assert await storage_backend.attempt_counts("0" * 24, 0) == (0, 0)


async def test_set_failing_since_records_and_clears_the_breaker_without_touching_the_cursor(
    storage_backend: Storage,
) -> None:
    hook, seqs = await delivering(storage_backend, 1)
    await storage_backend.set_failing_since(hook.id, 1_234)
    assert await storage_backend.delivery_state(hook.id) == DeliveryState(0, 1_234)
    await storage_backend.record_attempt(attempt(hook, seqs[0]), from_cursor=0)
    await storage_backend.set_failing_since(hook.id, 5_678)
    assert await storage_backend.delivery_state(hook.id) == DeliveryState(seqs[0], 5_678)
    await storage_backend.set_failing_since(hook.id, None)
    assert await storage_backend.delivery_state(hook.id) == DeliveryState(seqs[0], None)


async def test_restart_breaker_clears_failing_and_sets_where_the_window_begins(storage_backend: Storage) -> None:
    hook, seqs = await delivering(storage_backend, 1)
    await storage_backend.restart_breaker(hook.id, 900)
    assert await storage_backend.delivery_state(hook.id) == DeliveryState(0, None, 900)
    await storage_backend.record_attempt(attempt(hook, seqs[0]), from_cursor=0)
    await storage_backend.set_failing_since(hook.id, 1_000)
    await storage_backend.restart_breaker(hook.id, 2_000)
    assert await storage_backend.delivery_state(hook.id) == DeliveryState(seqs[0], None, 2_000)
    await storage_backend.set_failing_since(hook.id, 3_000)
    assert await storage_backend.delivery_state(hook.id) == DeliveryState(seqs[0], 3_000, 2_000)


async def test_recover_deliveries_moves_the_cursor_back_never_forward_and_drops_later_retries(
    storage_backend: Storage,
) -> None:
    hook, seqs = await delivering(storage_backend, 3)
    cursor = 0
    for seq in seqs:
        await storage_backend.record_attempt(
            attempt(hook, seq, outcome="retrying"), from_cursor=cursor, next_attempt_at=10
        )
        cursor = seq
    await storage_backend.set_failing_since(hook.id, 77)
    await storage_backend.recover_deliveries(hook.id, seqs[0])
    assert await storage_backend.delivery_state(hook.id) == DeliveryState(seqs[0], 77)
    assert [d.event.seq for d in await storage_backend.due_deliveries(hook.id, 10, 10)] == [seqs[0]]
    await storage_backend.recover_deliveries(hook.id, seqs[2])
    assert (await storage_backend.delivery_state(hook.id)).cursor_seq == seqs[0]
    fresh, fresh_seqs = await delivering(storage_backend, 2)
    await storage_backend.recover_deliveries(fresh.id, fresh_seqs[0])
    assert await storage_backend.delivery_state(fresh.id) == DeliveryState(0, None)


async def test_webhook_delivery_options_are_stored_and_updated_and_a_rate_of_zero_clears_it(
    storage_backend: Storage,
) -> None:
    account_id = f"acc_{uuid4().hex[:8]}"
    await storage_backend.create_account(account_id, KEY, None, "ingest")
    hook = dataclasses.replace(
        webhook(account_id), url="https://example.com/", secret="whsk_x", signature_scheme="ed25519", max_rate=5
    )
    await storage_backend.create_webhook(hook)
    stored = await storage_backend.get_webhook(hook.id)
    assert stored == hook and stored.ordering == "fast" and stored.previous_secret is None
    changed = await storage_backend.update_webhook(hook.id, max_rate=20, ordering="strict")
    assert changed is not None and (changed.webhook.max_rate, changed.webhook.ordering) == (20, "strict")
    cleared = await storage_backend.update_webhook(hook.id, max_rate=0)
    assert cleared is not None and cleared.webhook.max_rate is None and cleared.webhook.ordering == "strict"


async def test_rotate_secret_keeps_the_replaced_secret_until_its_expiry_or_drops_it_at_once(
    storage_backend: Storage,
) -> None:
    account_id = f"acc_{uuid4().hex[:8]}"
    await storage_backend.create_account(account_id, KEY, None, "ingest")
    hook = dataclasses.replace(webhook(account_id), url="https://example.com/", secret="whsec_AAAA")
    await storage_backend.create_webhook(hook)
    rotated = await storage_backend.rotate_secret(hook.id, "whsec_BBBB", 123)
    assert rotated is not None
    assert (rotated.webhook.secret, rotated.webhook.previous_secret, rotated.webhook.previous_expires_at) == (
        "whsec_BBBB",
        "whsec_AAAA",
        123,
    )
    again = await storage_backend.rotate_secret(hook.id, "whsec_CCCC", 456)
    assert again is not None and (again.webhook.secret, again.webhook.previous_secret) == ("whsec_CCCC", "whsec_BBBB")
    at_once = await storage_backend.rotate_secret(hook.id, "whsec_DDDD", None)
    assert at_once is not None
    assert (at_once.webhook.previous_secret, at_once.webhook.previous_expires_at) == (None, None)
    assert await storage_backend.get_webhook(hook.id) == at_once.webhook
    assert await storage_backend.rotate_secret("0" * 24, "whsec_EEEE", None) is None
    # A plain secret update is a rotation without overlap.
    await storage_backend.rotate_secret(hook.id, "whsec_FFFF", 789)
    plain = await storage_backend.update_webhook(hook.id, secret="whsec_GGGG")
    assert plain is not None and plain.webhook.previous_secret is None


async def test_attempts_record_when_due_and_retry_after_and_filter_by_outcome(storage_backend: Storage) -> None:
    hook, seqs = await delivering(storage_backend, 2)
    retrying = dataclasses.replace(
        attempt(hook, seqs[0], outcome="retrying", at=1_000), next_attempt_at=9_000, retry_after=8_000
    )
    await storage_backend.record_attempt(retrying, from_cursor=0, next_attempt_at=9_000)
    await storage_backend.record_attempt(attempt(hook, seqs[1]), from_cursor=seqs[0])
    (due,) = await storage_backend.due_deliveries(hook.id, 9_000, 10)
    assert (due.attempts, due.next_attempt_at, due.first_attempt_at) == (1, 9_000, 1_000)
    await storage_backend.record_attempt(attempt(hook, seqs[0], 2, "failed"), from_cursor=None)
    (pending,) = await storage_backend.list_attempts(hook.id, None, 10, outcome="retrying")
    assert (pending.seq, pending.next_attempt_at, pending.retry_after) == (seqs[0], 9_000, 8_000)
    assert [a.seq for a in await storage_backend.list_attempts(hook.id, None, 10, outcome="delivered")] == [seqs[1]]
    assert [a.attempt for a in await storage_backend.list_attempts(hook.id, None, 10, outcome="failed")] == [2]
    assert len(await storage_backend.list_attempts(hook.id, None, 10)) == 3


async def test_undelivered_lists_feed_events_without_a_delivered_attempt_in_seq_order(
    storage_backend: Storage,
) -> None:
    hook, seqs = await delivering(storage_backend, 4)
    await storage_backend.record_attempt(attempt(hook, seqs[0]), from_cursor=0)
    await storage_backend.record_attempt(
        attempt(hook, seqs[1], outcome="retrying"), from_cursor=seqs[0], next_attempt_at=5_000
    )
    failed = dataclasses.replace(attempt(hook, seqs[2], outcome="retrying"), status_code=410)
    await storage_backend.record_attempt(failed, from_cursor=seqs[1], next_attempt_at=6_000)
    await storage_backend.record_attempt(attempt(hook, seqs[2], 2, "failed"), from_cursor=None)
    listed = await storage_backend.undelivered(hook.id, 0, 10)
    assert [(u.seq, u.attempts, u.last_status_code, u.next_attempt_at, u.queued) for u in listed] == [
        (seqs[1], 1, 503, 5_000, False),
        (seqs[2], 2, 503, None, False),
        (seqs[3], 0, None, None, True),
    ]
    assert listed[2].type == "message.new" and listed[2].id.startswith("evt_")
    assert [u.seq for u in await storage_backend.undelivered(hook.id, seqs[1], 1)] == [seqs[2]]
    assert await storage_backend.undelivered("0" * 24, 0, 10) == []


async def test_feed_seq_before_is_the_newest_feed_seq_appended_before_a_time(storage_backend: Storage) -> None:
    hook, seqs = await delivering(storage_backend, 2)
    await asyncio.sleep(0.002)
    between = time.time_ns() // 1000
    await asyncio.sleep(0.002)
    account_id = hook.account_id
    later = await storage_backend.append(account_id, [event()])
    assert await storage_backend.feed_seq_before(hook.id, between) == seqs[1]
    assert await storage_backend.feed_seq_before(hook.id, 0) == 0
    assert await storage_backend.feed_seq_before(hook.id, time.time_ns() // 1000 + 1) == later.appended[0].seq


async def test_pruning_an_event_drops_its_pending_retry(storage_backend: Storage) -> None:
    hook, seqs = await delivering(storage_backend, 2)
    await storage_backend.record_attempt(attempt(hook, seqs[0], outcome="retrying"), from_cursor=0, next_attempt_at=10)
    await storage_backend.record_attempt(
        attempt(hook, seqs[1], outcome="retrying"), from_cursor=seqs[0], next_attempt_at=10
    )
    await asyncio.sleep(0.002)
    assert await storage_backend.prune(time.time_ns() // 1000, 1) == 1
    assert [d.event.seq for d in await storage_backend.due_deliveries(hook.id, 10, 10)] == [seqs[1]]


# Text no backend can store


async def test_text_no_backend_can_store_is_found_nowhere_and_refused_for_writes(storage_backend: Storage) -> None:
    account_id, hook = await monitored_account(storage_backend)
    await storage_backend.append(account_id, [event()])
    for bad in ("acc\x00x", "acc\ud800x"):
        assert await storage_backend.get_account(bad) is None
        assert await storage_backend.list_accounts(bad) == []
        assert await storage_backend.delete_account(bad) == []
        assert await storage_backend.get_webhook(bad) is None
        assert await storage_backend.list_webhooks(KEY, bad) == []
        assert await storage_backend.update_webhook(bad, is_active=False) is None
        assert await storage_backend.delete_webhook(bad) is None
        assert await storage_backend.revoke_api_key(bad) is None
        assert (await storage_backend.read_feed(bad, 0, 10)).events == ()
        joined = await storage_backend.read_feed_joined(bad, 0, 10)
        assert (joined.count, joined.joined, joined.has_more) == (0, b"", False)
        assert await storage_backend.monitor_lease(bad) is None
        assert await storage_backend.monitor_intervals(bad, KEY) == []
        assert await storage_backend.delivery_state(bad) == DeliveryState(0, None)
        assert await storage_backend.due_deliveries(bad, 10**18, 10) == []
        assert await storage_backend.next_delivery_due(bad) is None
        assert await storage_backend.list_attempts(bad, None, 10) == []
        assert await storage_backend.attempt_counts(bad, 0) == (0, 0)
        assert await storage_backend.checkpoint_monitors(bad, LATER, UNTIL) == set()
        await storage_backend.stop_monitor(bad, bad, LATER)
        await storage_backend.set_monitor_status(bad, bad, "running", None)
        writes = [
            storage_backend.create_account(bad, KEY, None, "ingest"),
            storage_backend.create_account("acc_fine", KEY, bad, "ingest"),
            storage_backend.create_api_key(bad, "name", b"x" * 32, "hk_x"),
            storage_backend.create_webhook(webhook(account_id, (bad,))),
            storage_backend.update_webhook(hook.id, url=f"https://example.com/{bad}"),
            storage_backend.append(account_id, [event(event_id=bad)]),
            storage_backend.append(account_id, [event(), event(bad)]),
            storage_backend.start_monitor(bad, KEY, "host:1:a", START, NOW, UNTIL),
            storage_backend.record_attempt(dataclasses.replace(attempt(hook, 1), error=bad), from_cursor=0),
            storage_backend.set_failing_since(bad, 1),
            storage_backend.recover_deliveries(bad, 0),
        ]
        for write in writes:
            with pytest.raises(UnstorableText):
                await write
    assert await storage_backend.get_account("acc_fine") is None
    assert len(await feed_seqs(storage_backend, hook.id)) == 1
    assert (await storage_backend.get_webhook(hook.id)) == hook


# The contract covers the whole protocol


def protocol_methods(protocol: type) -> set[str]:
    """The public methods of a Protocol and of the Protocols it combines."""
    return {
        name
        for cls in protocol.__mro__
        if getattr(cls, "_is_protocol", False) and cls.__module__ == protocol.__module__
        for name, member in vars(cls).items()
        if inspect.isfunction(member) and not name.startswith("_")
    }


def test_every_storage_method_is_called_by_a_contract_test() -> None:
    tree = ast.parse(Path(__file__).read_text())
    called: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.AsyncFunctionDef | ast.FunctionDef) and node.name.startswith("test_"):
            called.update(
                sub.func.attr
                for sub in ast.walk(node)
                if isinstance(sub, ast.Call) and isinstance(sub.func, ast.Attribute)
            )
    methods = protocol_methods(Storage)
    assert len(methods) >= 38 and {"append", "record_attempt", "start_monitor", "create_webhook"} <= methods
    assert sorted(methods - called) == []
