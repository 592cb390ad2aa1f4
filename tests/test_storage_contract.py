"""The storage contract: written once, run on every backend (see tests/backends.py)."""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Callable
from uuid import uuid4

import pytest

from storage.base import (
    AccountExists,
    AccountNotMonitored,
    EventIdConflict,
    NewEvent,
    Storage,
    UnknownAccount,
    Webhook,
)

pytestmark = pytest.mark.anyio

KEY = "key_contract"


def event(event_type: str = "message.new", event_id: str | None = None) -> NewEvent:
    """A minimal event whose envelope is easy to check."""
    identifier = event_id or f"evt_{uuid4().hex}"
    head = b'{"id":"' + identifier.encode() + b'","seq":'
    tail = b',"type":"' + event_type.encode() + b'"}'
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
