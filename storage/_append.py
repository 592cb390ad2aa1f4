"""What an append does, decided once for every backend: seqs, idempotency, feed membership."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from storage.base import (
    AccountNotMonitored,
    Appended,
    AppendResult,
    Committed,
    EventIdConflict,
    FeedMatcher,
    NewEvent,
    StoredEvent,
)

# (webhook id, its normalized filter) of an account's active webhooks.
ActiveHooks = Sequence[tuple[str, tuple[str, ...]]]


def plan_append(
    account_id: str,
    events: Sequence[NewEvent],
    *,
    head: int,
    existing: Mapping[str, tuple[int, str]],
    hooks: ActiveHooks,
    matcher: FeedMatcher,
    only_webhook_id: str | None,
    require_monitored: bool,
) -> AppendResult:
    """The events to insert after seq `head`, and the feeds they join.

    `existing` maps ids already in the log to (seq, account id). An id seen
    again, in the log or earlier in this batch, keeps its first seq.
    """
    if require_monitored and not hooks:
        raise AccountNotMonitored(account_id)
    if only_webhook_id is not None:
        hooks = [(only_webhook_id, ("all",))]
    known = dict(existing)
    seq = head
    appended: list[Appended] = []
    committed: list[Committed] = []
    for event in events:
        found = known.get(event.id)
        if found is not None:
            if found[1] != account_id:
                raise EventIdConflict(event.id)
            appended.append(Appended(event.id, found[0], False))
            continue
        seq += 1
        known[event.id] = (seq, account_id)
        webhook_ids = tuple(hook_id for hook_id, filters in hooks if matcher(filters, event.type))
        appended.append(Appended(event.id, seq, True))
        committed.append(
            Committed(StoredEvent(seq, event.id, account_id, event.type, event.envelope(seq)), webhook_ids)
        )
    return AppendResult(tuple(appended), tuple(committed))
