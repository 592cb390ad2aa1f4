"""`/v2/webhooks`: subscriptions, their lifecycle, secrets, test events and mock payloads (SPEC §5.2, §5.5)."""

from __future__ import annotations

import re
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from app.addresses import UnsafeUrl, vetted_target
from app.auth import customer, owned_account, owned_custom_webhook, owned_webhook
from app.context import Context, context
from app.delivery import delivery_engine
from app.envelopes import test_event
from app.errors import BadRequest, InvalidUrl, WebhookNotFound
from app.ids import event_id
from app.ids import webhook_id as new_webhook_id
from app.requests import json_body, optional_str, reject_unknown
from app.responses import success
from app.settings import parse_duration
from app.signing import SCHEMES, new_secret, public_key
from app.times import iso_micros, iso_millis, wall_micros
from storage.base import Webhook, WebhookChange

WEBHOOK_FIELDS = ("account_id", "url", "events", "compressed_delivery", "signature_scheme", "max_rate", "ordering")
UPDATABLE_FIELDS = ("events", "url", "compressed_delivery", "max_rate", "ordering")
# Custom-mode options that mean nothing without a URL (SPEC §8.1).
DELIVERY_OPTIONS = ("signature_scheme", "max_rate", "ordering")
ORDERINGS = ("fast", "strict")
MAX_RATE = 10_000
OVERLAP = re.compile(r"[0-9]{1,9}(?:\.[0-9]{1,9})?(?:ms|s|m|h|d)?", re.ASCII)
MAX_OVERLAP = 30 * 86_400.0
# Statuses only `start` leaves: the breaker's `failed` and a receiver's 410 `disabled`.
STOPPED_STATUSES = ("failed", "disabled")


def webhook_json(webhook: Webhook, *, with_secret: bool = False) -> dict[str, Any]:
    data: dict[str, Any] = {
        "webhook_id": webhook.id,
        "account_id": webhook.account_id,
        "mode": webhook.mode,
        "stream_url": f"/v2/webhooks/{webhook.id}/stream",
        "events_url": f"/v2/webhooks/{webhook.id}/events",
        "events": list(webhook.events),
        "is_active": webhook.is_active,
        "created_at": iso_micros(webhook.created_at),
        "updated_at": iso_micros(webhook.updated_at),
    }
    if webhook.mode == "custom":
        data["url"] = webhook.url
        data["compressed_delivery"] = webhook.compressed_delivery
        data["status"] = webhook.status
        data["signature_scheme"] = webhook.signature_scheme
        data["max_rate"] = webhook.max_rate
        data["ordering"] = webhook.ordering
        if webhook.signature_scheme == "ed25519":
            # Public, so always shown; the private key never leaves the server.
            assert webhook.secret is not None
            data["public_key"] = public_key(webhook.secret)
        elif with_secret:
            data["secret"] = webhook.secret
    return data


async def checked_url(ctx: Context, value: object) -> str:
    """A delivery URL the SSRF guard allows (scheme and resolved addresses); 400 naming `url` otherwise."""
    if not isinstance(value, str) or not 1 <= len(value) <= 2048:
        raise BadRequest("url must be a string of at most 2048 characters.", field="url")
    settings = ctx.settings
    try:
        await vetted_target(value, allow_http=settings.allow_http, allow_private=settings.allow_private_urls)
    except UnsafeUrl as exc:
        raise InvalidUrl(str(exc), field="url") from None
    return value


def checked_max_rate(value: object) -> int | None:
    """Deliveries per second, 1–10000, or None for unlimited; 400 naming `max_rate` otherwise."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_RATE:
        raise BadRequest(
            f"max_rate must be an integer from 1 to {MAX_RATE} (deliveries per second), or null for unlimited.",
            field="max_rate",
        )
    return value


def checked_choice(value: object, field: str, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise BadRequest(f"{field} must be one of: {', '.join(choices)}.", field=field)
    assert isinstance(value, str)
    return value


def checked_flag(value: object, field: str) -> bool:
    if not isinstance(value, bool):
        raise BadRequest(f"{field} must be true or false.", field=field)
    return value


async def changed(ctx: Context, change: WebhookChange | None, webhook_id: str) -> Webhook:
    """The webhook after a change, once every listener (streams, monitors, delivery) has been told."""
    if change is None:
        raise WebhookNotFound(webhook_id)
    await ctx.webhook_changed(change)
    return change.webhook


async def create_webhook(request: Request) -> Response:
    key = await customer(request)
    body = await json_body(request)
    reject_unknown(body, WEBHOOK_FIELDS)
    account_id = optional_str(body, "account_id", max_length=128)
    if account_id is None:
        raise BadRequest("account_id is required.", field="account_id")
    ctx = context(request)
    events = ctx.catalog.normalize_filters(body.get("events", ["all"]))
    url = None if body.get("url") is None else await checked_url(ctx, body["url"])
    compressed = checked_flag(body.get("compressed_delivery", False), "compressed_delivery")
    if url is None:
        for option in DELIVERY_OPTIONS:
            if option in body:
                raise BadRequest(f"{option} applies to custom-mode webhooks only (set url).", field=option)
    scheme = checked_choice(body.get("signature_scheme", "hmac-sha256"), "signature_scheme", SCHEMES)
    max_rate = checked_max_rate(body.get("max_rate"))
    ordering = checked_choice(body.get("ordering", "fast"), "ordering", ORDERINGS)
    await owned_account(request, key, account_id)
    now = wall_micros()
    webhook = Webhook(
        id=new_webhook_id(),
        account_id=account_id,
        api_key_id=key.id,
        url=url,
        secret=new_secret(scheme) if url is not None else None,
        events=events,
        compressed_delivery=compressed,
        is_active=True,
        status="healthy",
        created_at=now,
        updated_at=now,
        signature_scheme=scheme,
        max_rate=max_rate,
        ordering=ordering,
    )
    change = await ctx.storage.create_webhook(webhook)
    await ctx.webhook_changed(change)
    return success(webhook_json(change.webhook, with_secret=True), "create_webhook", 201)


async def list_webhooks(request: Request) -> Response:
    key = await customer(request)
    account_id = request.query_params.get("account_id")
    if account_id is not None:
        await owned_account(request, key, account_id)
    webhooks = await context(request).storage.list_webhooks(key.id, account_id)
    return success([webhook_json(webhook) for webhook in webhooks], "list_webhooks")


async def get_webhook(request: Request) -> Response:
    key = await customer(request)
    return success(webhook_json(await owned_webhook(request, key)), "get_webhook")


async def update_webhook(request: Request) -> Response:
    key = await customer(request)
    webhook = await owned_webhook(request, key)
    body = await json_body(request)
    reject_unknown(body, UPDATABLE_FIELDS)
    ctx = context(request)
    events = None if body.get("events") is None else ctx.catalog.normalize_filters(body["events"])
    url = None
    if body.get("url") is not None:
        if webhook.mode == "hosted":
            raise BadRequest(
                "url cannot be set on a hosted webhook; create a custom-mode webhook with a url instead.", field="url"
            )
        url = await checked_url(ctx, body["url"])
    compressed = None
    if "compressed_delivery" in body:
        compressed = checked_flag(body["compressed_delivery"], "compressed_delivery")
    if webhook.mode == "hosted":
        for option in ("max_rate", "ordering"):
            if option in body:
                raise BadRequest(f"{option} applies to custom-mode webhooks only.", field=option)
    max_rate = None
    if "max_rate" in body:
        # 0 tells storage to clear the rate: null means unlimited.
        max_rate = checked_max_rate(body["max_rate"]) or 0
    ordering = None if "ordering" not in body else checked_choice(body["ordering"], "ordering", ORDERINGS)
    change = await ctx.storage.update_webhook(
        webhook.id, events=events, url=url, compressed_delivery=compressed, max_rate=max_rate, ordering=ordering
    )
    return success(webhook_json(await changed(ctx, change, webhook.id)), "update_webhook")


async def stop_webhook(request: Request) -> Response:
    key = await customer(request)
    webhook = await owned_webhook(request, key)
    ctx = context(request)
    change = await ctx.storage.update_webhook(webhook.id, is_active=False)
    return success(webhook_json(await changed(ctx, change, webhook.id)), "stop_webhook")


async def start_webhook(request: Request) -> Response:
    key = await customer(request)
    webhook = await owned_webhook(request, key)
    ctx = context(request)
    status = "healthy" if webhook.status in STOPPED_STATUSES else None
    if status is not None and webhook.mode == "custom":
        # The failures that stopped it are history: without this, the first check after `start`
        # would count them and mark the webhook failing again before anything new was sent.
        await delivery_engine(ctx).restart_breaker(webhook.id)
    change = await ctx.storage.update_webhook(webhook.id, is_active=True, status=status)
    return success(webhook_json(await changed(ctx, change, webhook.id)), "start_webhook")


async def delete_webhook(request: Request) -> Response:
    key = await customer(request)
    webhook = await owned_webhook(request, key)
    ctx = context(request)
    await changed(ctx, await ctx.storage.delete_webhook(webhook.id), webhook.id)
    return success({"webhook_id": webhook.id, "deleted": True}, "delete_webhook")


async def rotate_secret(request: Request) -> Response:
    key = await customer(request)
    webhook = await owned_custom_webhook(request, key, "Only custom-mode webhooks have a signing secret")
    body = await json_body(request, required=False)
    reject_unknown(body, ("overlap",))
    ctx = context(request)
    overlap = ctx.settings.secret_overlap
    if "overlap" in body:
        overlap = checked_overlap(body["overlap"])
    expires = wall_micros() + int(overlap * 1_000_000) if overlap > 0 else None
    change = await ctx.storage.rotate_secret(webhook.id, new_secret(webhook.signature_scheme), expires)
    rotated = await changed(ctx, change, webhook.id)
    data = webhook_json(rotated, with_secret=True)
    data["previous_expires_at"] = (
        None if rotated.previous_expires_at is None else iso_micros(rotated.previous_expires_at)
    )
    return success(data, "rotate_secret")


def checked_overlap(value: object) -> float:
    """How long the replaced secret keeps signing: a duration from 0s to 30d; 400 naming `overlap` otherwise."""
    # One spelling, as for every number in a request: ASCII digits, no spaces (a setting's parser allows more).
    seconds = parse_duration(value) if isinstance(value, str) and OVERLAP.fullmatch(value) else None
    if seconds is None or not 0 <= seconds <= MAX_OVERLAP:
        raise BadRequest(
            'overlap must be a duration such as "24h", "30m" or "0s" (immediate), at most 30d.', field="overlap"
        )
    return seconds


async def test_webhook(request: Request) -> Response:
    key = await customer(request)
    webhook = await owned_webhook(request, key)
    ctx = context(request)
    if webhook.mode == "custom":
        # Delivered at once and outside the feed, so it neither waits behind nor reorders real events.
        sent = await delivery_engine(ctx).deliver_test(webhook)
        outcome = {"status_code": sent.status_code, "latency_ms": sent.latency_ms, "ok": sent.ok, "error": sent.error}
        return success(outcome, "test_webhook")
    event = test_event(webhook.id, webhook.account_id)
    result = await ctx.storage.append(webhook.account_id, [event], only_webhook_id=webhook.id, require_monitored=False)
    appended = result.appended[0]
    return success({"id": appended.id, "seq": appended.seq, "type": "webhook.test"}, "test_webhook", 201)


async def mock_payload(request: Request) -> Response:
    await customer(request)
    body = await json_body(request)
    reject_unknown(body, ("type",))
    ctx = context(request)
    name = body.get("type")
    entry = ctx.catalog.get(name) if isinstance(name, str) else None
    if entry is None:
        raise BadRequest(f"type must be a known event type; valid types: {', '.join(ctx.catalog.names)}.", field="type")
    envelope: dict[str, Any] = {
        "id": event_id(),
        "seq": 0,
        "type": entry.type,
        "account_id": "acc_example",
        "timestamp": iso_millis(),
        "version": "1.0",
        "data": entry.example,
    }
    return success(envelope, "mock_payload")


routes = [
    Route("/v2/webhooks/mock-payload", mock_payload, methods=["POST"]),
    Route("/v2/webhooks", create_webhook, methods=["POST"]),
    Route("/v2/webhooks", list_webhooks, methods=["GET"]),
    Route("/v2/webhooks/{webhook_id}", get_webhook, methods=["GET"]),
    Route("/v2/webhooks/{webhook_id}", update_webhook, methods=["PATCH", "PUT"]),
    Route("/v2/webhooks/{webhook_id}", delete_webhook, methods=["DELETE"]),
    Route("/v2/webhooks/{webhook_id}/stop", stop_webhook, methods=["POST"]),
    Route("/v2/webhooks/{webhook_id}/start", start_webhook, methods=["POST"]),
    Route("/v2/webhooks/{webhook_id}/rotate-secret", rotate_secret, methods=["POST"]),
    Route("/v2/webhooks/{webhook_id}/test", test_webhook, methods=["POST"]),
]
