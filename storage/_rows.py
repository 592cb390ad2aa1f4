"""What both backends read and write the same way: column lists, row mappers, the webhook change-set.

Each backend keeps its own SQL; these are the parts of it that are the same text on
both, and the mapping between a row (a tuple, an `sqlite3.Row` or an `asyncpg.Record`,
all indexed by position) and the records of `storage.base`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol

from storage.base import Account, ApiKey, DeliveryAttempt, Undelivered, Webhook


class Row(Protocol):
    """A database row read by position: a tuple, an `sqlite3.Row`, an `asyncpg.Record`."""

    def __getitem__(self, index: int, /) -> Any: ...


WEBHOOK_COLUMNS = (
    "id, account_id, api_key_id, url, secret, events, compressed_delivery, is_active, status, created_at, updated_at,"
    " signature_scheme, previous_secret, previous_expires_at, max_rate, ordering"
)
API_KEY_COLUMNS = "id, name, prefix, created_at, revoked_at"
ATTEMPT_COLUMNS = (
    "webhook_id, seq, event_id, attempt, outcome, status_code, latency_ms, error, created_at,"
    " next_attempt_at, retry_after"
)
LEASE_COLUMNS = "account_id, owner, expires_at, status, reason"
INTERVAL_COLUMNS = "started_at, checkpoint_at, stopped_at"
# Before any attempt id: `list_attempts` without `before_id` starts from the newest.
NO_ATTEMPT_ID = 2**63 - 1


def webhook_from_row(row: Row, events: tuple[str, ...]) -> Webhook:
    """A webhook from a row of `WEBHOOK_COLUMNS`, its filter already decoded by the backend."""
    return Webhook(
        id=row[0],
        account_id=row[1],
        api_key_id=row[2],
        url=row[3],
        secret=row[4],
        events=events,
        compressed_delivery=bool(row[6]),
        is_active=bool(row[7]),
        status=row[8],
        created_at=row[9],
        updated_at=row[10],
        signature_scheme=row[11],
        previous_secret=row[12],
        previous_expires_at=row[13],
        max_rate=row[14],
        ordering=row[15],
    )


def undelivered_from_row(row: Row) -> Undelivered:
    """An undelivered feed event from (seq, id, type, attempts, last status, next attempt, queued)."""
    return Undelivered(
        seq=row[0],
        id=row[1],
        type=row[2],
        attempts=row[3],
        last_status_code=row[4],
        next_attempt_at=row[5],
        queued=bool(row[6]),
    )


def account_from_row(row: Row) -> Account:
    """An account from (id, api_key_id, name, connector, created_at, active webhook count)."""
    return Account(
        id=row[0], api_key_id=row[1], name=row[2], connector=row[3], created_at=row[4], active_webhooks=row[5]
    )


def api_key_from_row(row: Row) -> ApiKey:
    """An API key from a row of `API_KEY_COLUMNS`."""
    return ApiKey(id=row[0], name=row[1], prefix=row[2], created_at=row[3], revoked_at=row[4])


def webhook_values(
    webhook: Webhook, encode_events: Callable[[tuple[str, ...]], object], encode_bool: Callable[[bool], object]
) -> tuple[object, ...]:
    """A webhook's values in the order of `WEBHOOK_COLUMNS`, encoded as the backend stores them."""
    return (
        webhook.id,
        webhook.account_id,
        webhook.api_key_id,
        webhook.url,
        webhook.secret,
        encode_events(webhook.events),
        encode_bool(webhook.compressed_delivery),
        encode_bool(webhook.is_active),
        webhook.status,
        webhook.created_at,
        webhook.updated_at,
        webhook.signature_scheme,
        webhook.previous_secret,
        webhook.previous_expires_at,
        webhook.max_rate,
        webhook.ordering,
    )


def attempt_values(attempt: DeliveryAttempt) -> tuple[object, ...]:
    """An attempt's values in the order of `ATTEMPT_COLUMNS` (its id is the database's)."""
    return (
        attempt.webhook_id,
        attempt.seq,
        attempt.event_id,
        attempt.attempt,
        attempt.outcome,
        attempt.status_code,
        attempt.latency_ms,
        attempt.error,
        attempt.created_at,
        attempt.next_attempt_at,
        attempt.retry_after,
    )


def webhook_changes(
    *,
    events: tuple[str, ...] | None,
    url: str | None,
    compressed_delivery: bool | None,
    secret: str | None,
    status: str | None,
    is_active: bool | None,
    max_rate: int | None,
    ordering: str | None,
    updated_at: int,
    encode_events: Callable[[tuple[str, ...]], object],
    encode_bool: Callable[[bool], object],
) -> dict[str, object]:
    """The columns an `update_webhook` sets, in a fixed order, encoded as the backend stores them."""
    changes: dict[str, object] = {}
    if events is not None:
        changes["events"] = encode_events(events)
    if url is not None:
        changes["url"] = url
    if compressed_delivery is not None:
        changes["compressed_delivery"] = encode_bool(compressed_delivery)
    if secret is not None:
        changes["secret"] = secret
        changes["previous_secret"] = None
        changes["previous_expires_at"] = None
    if status is not None:
        changes["status"] = status
    if is_active is not None:
        changes["is_active"] = encode_bool(is_active)
    if max_rate is not None:
        changes["max_rate"] = max_rate or None
    if ordering is not None:
        changes["ordering"] = ordering
    changes["updated_at"] = updated_at
    return changes


def prune_cutoff(rows: Sequence[Any], older_than: int) -> tuple[int, int]:
    """(the newest seq to prune, how many) from the oldest events' (seq, appended_at), stopping at the first too new."""
    through = 0
    count = 0
    for seq, appended_at in rows:
        if appended_at >= older_than:
            break
        through = seq
        count += 1
    return through, count
