"""`/v2/accounts`: the connected accounts an API key owns (SPEC §5.1)."""

from __future__ import annotations

import re
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from app.auth import ACCOUNT_ID, customer, issued_shape, owned_account
from app.connectors import allowed_connectors
from app.context import Context, context
from app.errors import AccountIdTaken, BadRequest
from app.ids import account_id as new_account_id
from app.monitors import monitoring_state
from app.requests import json_body, optional_str, reject_unknown
from app.responses import success
from app.times import iso_micros
from storage.base import Account, AccountExists, MonitorLease, WebhookChange

CONNECTOR = re.compile(r"\A[A-Za-z_][A-Za-z0-9_.:]{0,199}\Z")


def account_json(account: Account, lease: MonitorLease | None = None) -> dict[str, Any]:
    monitoring, reason = monitoring_state(account, lease)
    return {
        "account_id": account.id,
        "name": account.name,
        "connector": account.connector,
        "monitoring": monitoring,
        "status_reason": reason,
        "active_webhooks": account.active_webhooks,
        "created_at": iso_micros(account.created_at),
    }


async def monitored_account_json(ctx: Context, account: Account) -> dict[str, Any]:
    """The account with its monitor's state, which may be held by another process."""
    lease = await ctx.storage.monitor_lease(account.id) if account.active_webhooks else None
    return account_json(account, lease)


async def create_account(request: Request) -> Response:
    key = await customer(request)
    body = await json_body(request, required=False)
    reject_unknown(body, ("account_id", "name", "connector"))
    account_id = optional_str(body, "account_id", max_length=128)
    if account_id is None:
        account_id = new_account_id()
    elif not issued_shape(account_id, ACCOUNT_ID):
        raise BadRequest(
            "account_id must be 1-128 characters: letters, digits and _ . : @ + = -, starting with a letter or digit.",
            field="account_id",
        )
    name = optional_str(body, "name", max_length=200)
    ctx = context(request)
    connector = optional_str(body, "connector", max_length=200) or ctx.settings.default_connector
    if not CONNECTOR.match(connector):
        raise BadRequest("connector must be a connector name or a package.module:Class path.", field="connector")
    allowed = allowed_connectors(ctx.settings)
    if connector not in allowed:
        raise BadRequest(
            f"connector {connector!r} is not enabled on this server; use one of: {', '.join(allowed)}"
            " (the operator enables more with HOOKSTREAM_CONNECTORS).",
            field="connector",
        )
    try:
        account = await ctx.storage.create_account(account_id, key.id, name, connector)
    except AccountExists:
        raise AccountIdTaken(f"An account with id {account_id!r} already exists.") from None
    return success(account_json(account), "create_account", 201)


async def list_accounts(request: Request) -> Response:
    key = await customer(request)
    ctx = context(request)
    accounts = await ctx.storage.list_accounts(key.id)
    return success([await monitored_account_json(ctx, account) for account in accounts], "list_accounts")


async def get_account(request: Request) -> Response:
    key = await customer(request)
    account = await owned_account(request, key, request.path_params["account_id"])
    return success(await monitored_account_json(context(request), account), "get_account")


async def delete_account(request: Request) -> Response:
    key = await customer(request)
    account = await owned_account(request, key, request.path_params["account_id"])
    ctx = context(request)
    deleted = await ctx.storage.delete_account(account.id)
    for webhook in deleted:
        await ctx.webhook_changed(WebhookChange(webhook, account_active_webhooks=0))
    return success(
        {"account_id": account.id, "deleted": True, "webhooks_deleted": [w.id for w in deleted]}, "delete_account"
    )


routes = [
    Route("/v2/accounts", create_account, methods=["POST"]),
    Route("/v2/accounts", list_accounts, methods=["GET"]),
    Route("/v2/accounts/{account_id}", get_account, methods=["GET"]),
    Route("/v2/accounts/{account_id}", delete_account, methods=["DELETE"]),
]
