"""`/v2/webhooks`: subscriptions, their lifecycle and utilities (SPEC §5.2, §5.5)."""

from __future__ import annotations

import re
import time
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from app.addresses import UnsafeUrl, vetted_target
from app.context import Context, context
from app.errors import BadRequest, NotFound
from app.ids import webhook_id as new_webhook_id
from app.requests import customer, json_body, optional_str, reject_unknown
from app.responses import iso_micros, success
from app.routes.accounts import owned_account
from app.signing import new_secret
from storage.base import ApiKey, Webhook, WebhookChange

WEBHOOK_FIELDS = ("account_id", "url", "events", "compressed_delivery")
WEBHOOK_ID = re.compile(r"\A[0-9a-f]{24}\Z")
UPDATABLE_FIELDS = ("events", "url", "compressed_delivery")


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
        if with_secret:
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
        raise BadRequest(str(exc), field="url", code="invalid_url") from None
    return value


def checked_flag(value: object, field: str) -> bool:
    if not isinstance(value, bool):
        raise BadRequest(f"{field} must be true or false.", field=field)
    return value


async def owned_webhook(request: Request, key: ApiKey, *, cached: bool = False) -> Webhook:
    """The webhook named in the path if this key owns it; 404 otherwise.

    `cached` serves reads that need only ownership (polling) from a cache that this
    process's own changes keep exact and another process's changes reach within a second.
    """
    webhook_id = request.path_params["webhook_id"]
    ctx = context(request)
    webhook = ctx.webhooks.get(webhook_id) if cached else None
    # An id we never issue is unknown without asking the database (PostgreSQL refuses NUL in text).
    if webhook is None and WEBHOOK_ID.match(webhook_id):
        webhook = await ctx.storage.get_webhook(webhook_id)
        if webhook is not None:
            ctx.webhooks.put(webhook_id, webhook)
    if webhook is None or webhook.api_key_id != key.id:
        raise NotFound(f"No webhook {webhook_id!r}.", code="webhook_not_found")
    return webhook


async def changed(ctx: Context, change: WebhookChange | None, webhook_id: str) -> Webhook:
    """The webhook after a change, once every listener (streams, monitors, delivery) has been told."""
    if change is None:
        raise NotFound(f"No webhook {webhook_id!r}.", code="webhook_not_found")
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
    await owned_account(request, key, account_id)
    now = time.time_ns() // 1000
    webhook = Webhook(
        id=new_webhook_id(),
        account_id=account_id,
        api_key_id=key.id,
        url=url,
        secret=new_secret() if url is not None else None,
        events=events,
        compressed_delivery=compressed,
        is_active=True,
        status="healthy",
        created_at=now,
        updated_at=now,
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
    change = await ctx.storage.update_webhook(webhook.id, events=events, url=url, compressed_delivery=compressed)
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
    status = "healthy" if webhook.status == "failed" else None
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
    webhook = await owned_webhook(request, key)
    if webhook.mode != "custom":
        raise BadRequest("Only custom-mode webhooks have a signing secret.", code="not_custom_mode")
    ctx = context(request)
    change = await ctx.storage.update_webhook(webhook.id, secret=new_secret())
    return success(webhook_json(await changed(ctx, change, webhook.id), with_secret=True), "rotate_secret")


routes = [
    Route("/v2/webhooks", create_webhook, methods=["POST"]),
    Route("/v2/webhooks", list_webhooks, methods=["GET"]),
    Route("/v2/webhooks/{webhook_id}", get_webhook, methods=["GET"]),
    Route("/v2/webhooks/{webhook_id}", update_webhook, methods=["PATCH", "PUT"]),
    Route("/v2/webhooks/{webhook_id}", delete_webhook, methods=["DELETE"]),
    Route("/v2/webhooks/{webhook_id}/stop", stop_webhook, methods=["POST"]),
    Route("/v2/webhooks/{webhook_id}/start", start_webhook, methods=["POST"]),
    Route("/v2/webhooks/{webhook_id}/rotate-secret", rotate_secret, methods=["POST"]),
]
