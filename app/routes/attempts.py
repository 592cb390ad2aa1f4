"""A custom webhook's delivery record: `/attempts` lists attempts, `/undelivered` what did not arrive,
`/recover` asks for the feed again (SPEC §8, §8.1)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from app.auth import customer, owned_custom_webhook
from app.context import context
from app.errors import BadRequest, CursorAhead
from app.requests import json_body, query_int, query_value, reject_unknown
from app.responses import success
from app.times import iso_micros
from storage.base import DeliveryAttempt, Undelivered

DEFAULT_LIMIT = 50
MAX_LIMIT = 500
# The API's outcome names; a pending attempt is stored as `retrying`.
OUTCOMES = {"delivered": "delivered", "failed": "failed", "pending": "retrying"}
NOT_CUSTOM = "Only custom-mode webhooks deliver to a URL"


def attempt_json(attempt: DeliveryAttempt) -> dict[str, Any]:
    return {
        "id": attempt.id,
        "event_id": attempt.event_id,
        "seq": attempt.seq,
        "attempt": attempt.attempt,
        "outcome": attempt.outcome,
        "status_code": attempt.status_code,
        "latency_ms": attempt.latency_ms,
        "error": attempt.error,
        "created_at": iso_micros(attempt.created_at),
        "next_attempt_at": _iso_or_none(attempt.next_attempt_at),
        # The time a 429/503's Retry-After named, capped at HOOKSTREAM_RETRY_AFTER_MAX.
        "retry_after": _iso_or_none(attempt.retry_after),
    }


def undelivered_json(item: Undelivered, now: int) -> dict[str, Any]:
    # Queued for its first attempt: due now. Given up: null.
    due = now if item.queued else item.next_attempt_at
    return {
        "seq": item.seq,
        "id": item.id,
        "type": item.type,
        "attempts": item.attempts,
        "last_status_code": item.last_status_code,
        "next_attempt_at": _iso_or_none(due),
    }


async def list_attempts(request: Request) -> Response:
    key = await customer(request)
    webhook = await owned_custom_webhook(request, key, NOT_CUSTOM)
    limit = min(query_int(request, "limit", minimum=1) or DEFAULT_LIMIT, MAX_LIMIT)
    before = query_int(request, "before", minimum=1)
    outcome = query_value(request, "outcome")
    if outcome is not None and outcome not in OUTCOMES:
        raise BadRequest(f"Query parameter outcome must be one of: {', '.join(OUTCOMES)}.", field="outcome")
    stored = None if outcome is None else OUTCOMES[outcome]
    attempts = await context(request).storage.list_attempts(webhook.id, before, limit + 1, outcome=stored)
    page = attempts[:limit]
    has_more = len(attempts) > limit
    return success(
        {
            "attempts": [attempt_json(attempt) for attempt in page],
            "has_more": has_more,
            # Pass as `before` for the next, older page.
            "next_before": page[-1].id if has_more else None,
        },
        "list_attempts",
    )


async def list_undelivered(request: Request) -> Response:
    key = await customer(request)
    webhook = await owned_custom_webhook(request, key, NOT_CUSTOM)
    limit = min(query_int(request, "limit", minimum=1) or DEFAULT_LIMIT, MAX_LIMIT)
    after = query_int(request, "afterSeq", minimum=0) or 0
    ctx = context(request)
    found = await ctx.storage.undelivered(webhook.id, after, limit + 1)
    page = found[:limit]
    has_more = len(found) > limit
    now = ctx.clock.now_micros()
    return success(
        {
            "events": [undelivered_json(item, now) for item in page],
            "has_more": has_more,
            # Pass as `afterSeq` for the next page.
            "next_after_seq": page[-1].seq if has_more else None,
        },
        "list_undelivered",
    )


async def recover(request: Request) -> Response:
    key = await customer(request)
    webhook = await owned_custom_webhook(request, key, NOT_CUSTOM)
    body = await json_body(request)
    reject_unknown(body, ("afterSeq", "since"))
    if ("afterSeq" in body) == ("since" in body):
        field = "since" if "since" in body else "afterSeq"
        raise BadRequest("Give exactly one of afterSeq (a seq) or since (an ISO 8601 time).", field=field)
    ctx = context(request)
    since = None
    if "since" in body:
        since = _since(body["since"])
        after = await ctx.storage.feed_seq_before(webhook.id, since)
    else:
        after = body["afterSeq"]
        if isinstance(after, bool) or not isinstance(after, int) or after < 0:
            raise BadRequest(
                "afterSeq must be a non-negative integer: the seq after which to re-deliver.", field="afterSeq"
            )
        head = (await ctx.storage.log_state()).head_seq
        if after > head:
            raise CursorAhead(f"afterSeq {after} is beyond the newest seq this log has assigned ({head}).")
    await ctx.storage.recover_deliveries(webhook.id, after)
    ctx.hub.wake(webhook.id)
    data: dict[str, Any] = {"webhook_id": webhook.id, "after_seq": after, "is_active": webhook.is_active}
    if since is not None:
        data["since"] = iso_micros(since)
    return success(data, "recover_webhook")


def _since(value: object) -> int:
    """An ISO 8601 time as wall-clock µs (no offset means UTC); 400 naming `since` otherwise."""
    problem = "since must be an ISO 8601 time like 2026-01-15T12:00:00Z: events appended from then are re-delivered."
    if not isinstance(value, str):
        raise BadRequest(problem, field="since")
    try:
        moment = datetime.fromisoformat(value)
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        return int(moment.timestamp() * 1_000_000)
    except (ValueError, OverflowError, OSError):
        raise BadRequest(problem, field="since") from None


def _iso_or_none(micros: int | None) -> str | None:
    return None if micros is None else iso_micros(micros)


routes = [
    Route("/v2/webhooks/{webhook_id}/attempts", list_attempts, methods=["GET"]),
    Route("/v2/webhooks/{webhook_id}/undelivered", list_undelivered, methods=["GET"]),
    Route("/v2/webhooks/{webhook_id}/recover", recover, methods=["POST"]),
]
