"""A custom webhook's delivery attempts: `/v2/webhooks/{id}/attempts` lists them, `/recover` asks for more (§8)."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from app.auth import customer, owned_custom_webhook
from app.context import context
from app.errors import BadRequest, CursorAhead
from app.requests import json_body, query_int, reject_unknown
from app.responses import success
from app.times import iso_micros
from storage.base import DeliveryAttempt

DEFAULT_LIMIT = 50
MAX_LIMIT = 500


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
    }


async def list_attempts(request: Request) -> Response:
    key = await customer(request)
    webhook = await owned_custom_webhook(request, key, "Only custom-mode webhooks deliver to a URL")
    limit = min(query_int(request, "limit", minimum=1) or DEFAULT_LIMIT, MAX_LIMIT)
    before = query_int(request, "before", minimum=1)
    attempts = await context(request).storage.list_attempts(webhook.id, before, limit + 1)
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


async def recover(request: Request) -> Response:
    key = await customer(request)
    webhook = await owned_custom_webhook(request, key, "Only custom-mode webhooks deliver to a URL")
    body = await json_body(request)
    reject_unknown(body, ("afterSeq",))
    after = body.get("afterSeq")
    if isinstance(after, bool) or not isinstance(after, int) or after < 0:
        raise BadRequest(
            "afterSeq must be a non-negative integer: the seq after which to re-deliver.", field="afterSeq"
        )
    ctx = context(request)
    head = (await ctx.storage.log_state()).head_seq
    if after > head:
        raise CursorAhead(f"afterSeq {after} is beyond the newest seq this log has assigned ({head}).")
    await ctx.storage.recover_deliveries(webhook.id, after)
    ctx.hub.wake(webhook.id)
    return success({"webhook_id": webhook.id, "after_seq": after, "is_active": webhook.is_active}, "recover_webhook")


routes = [
    Route("/v2/webhooks/{webhook_id}/attempts", list_attempts, methods=["GET"]),
    Route("/v2/webhooks/{webhook_id}/recover", recover, methods=["POST"]),
]
