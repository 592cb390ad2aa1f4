"""Who is asking, and what they own: API keys, the admin token, and owned accounts and webhooks.

A record another key owns answers exactly as an unknown one does (404), so ids never leak
across tenants. An id in a shape hookstream never issues is unknown without a database
round trip: that is the one guard for path ids, and it also keeps text PostgreSQL cannot
store (NUL) away from it.
"""

from __future__ import annotations

import hmac
import re

from starlette.requests import Request

from app.context import context
from app.errors import (
    AccountNotFound,
    InvalidAdminToken,
    InvalidApiKey,
    MissingAdminToken,
    MissingApiKey,
    NotCustomMode,
    WebhookNotFound,
)
from app.ids import hash_secret
from app.requests import header_value
from storage.base import Account, ApiKey, Webhook

# \Z, not $: `$` would allow a trailing newline.
ACCOUNT_ID = re.compile(r"\A[A-Za-z0-9][A-Za-z0-9_.:@+=-]{0,127}\Z")
WEBHOOK_ID = re.compile(r"\A[0-9a-f]{24}\Z")
API_KEY_ID = re.compile(r"\A[\x21-\x7e]{1,64}\Z")


async def customer(request: Request) -> ApiKey:
    """The API key sent as `x-api-key`, or 401; 429 past the key's rate limit."""
    secret = header_value(request, b"x-api-key")
    if not secret:
        raise MissingApiKey("Send your API key in the x-api-key header.")
    ctx = context(request)
    key_hash = hash_secret(secret)
    key = ctx.api_keys.get(key_hash)
    if key is None:
        key = await ctx.storage.api_key_by_hash(key_hash)
        if key is None:
            raise InvalidApiKey("The API key is not valid or has been revoked.")
        ctx.api_keys.put(key_hash, key)
    if ctx.key_rate is not None:
        ctx.key_rate.take(key.id)
    return key


def require_admin(request: Request) -> None:
    """Pass only with `Authorization: Bearer <HOOKSTREAM_ADMIN_TOKEN>`."""
    expected = context(request).settings.admin_token
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if not header:
        raise MissingAdminToken("Send the admin token as 'Authorization: Bearer <token>'.")
    if (
        expected is None
        or scheme.lower() != "bearer"
        or not hmac.compare_digest(token.strip().encode(), expected.encode())
    ):
        raise InvalidAdminToken("The admin token is not valid.")


def issued_shape(value: str, shape: re.Pattern[str]) -> bool:
    """Whether `value` has the shape of an id hookstream issues or accepts; any other is unknown."""
    return shape.match(value) is not None


async def account_of_key(request: Request, key: ApiKey, account_id: str) -> Account | None:
    """The account if this key owns it, else None, whether or not it exists."""
    if not issued_shape(account_id, ACCOUNT_ID):
        return None
    account = await context(request).storage.get_account(account_id)
    return account if account is not None and account.api_key_id == key.id else None


async def owned_account(request: Request, key: ApiKey, account_id: str) -> Account:
    """The account if this key owns it; 404 otherwise, whether or not it exists."""
    account = await account_of_key(request, key, account_id)
    if account is None:
        raise AccountNotFound(account_id)
    return account


async def webhook_by_id(request: Request, webhook_id: str, *, cached: bool = False) -> Webhook | None:
    """The webhook with this id, whoever owns it; None when unknown.

    `cached` serves reads that need only ownership (polling) from a cache that this
    process's own changes keep exact and another process's changes reach within
    milliseconds (storage tells of them), a second at most when that news is lost.
    """
    ctx = context(request)
    webhook = ctx.webhooks.get(webhook_id) if cached else None
    if webhook is None and issued_shape(webhook_id, WEBHOOK_ID):
        webhook = await ctx.storage.get_webhook(webhook_id)
        if webhook is not None:
            ctx.webhooks.put(webhook_id, webhook)
    return webhook


async def owned_webhook(request: Request, key: ApiKey, *, cached: bool = False) -> Webhook:
    """The webhook named in the path if this key owns it; 404 otherwise."""
    webhook_id = request.path_params["webhook_id"]
    webhook = await webhook_by_id(request, webhook_id, cached=cached)
    if webhook is None or webhook.api_key_id != key.id:
        raise WebhookNotFound(webhook_id)
    return webhook


async def owned_custom_webhook(request: Request, key: ApiKey, doing: str) -> Webhook:
    """The owned webhook named in the path, which must deliver to a URL; `doing` says what needs one."""
    webhook = await owned_webhook(request, key)
    if webhook.mode != "custom":
        raise NotCustomMode(f"{doing}; read a hosted webhook's feed from its events_url.")
    return webhook
