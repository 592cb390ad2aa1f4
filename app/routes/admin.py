"""`/v2/admin`: the operator's API keys (SPEC §6), behind the admin token."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from app import ids
from app.auth import API_KEY_ID, issued_shape, require_admin
from app.context import context
from app.errors import ApiKeyNotFound, BadRequest
from app.requests import json_body, optional_str, reject_unknown
from app.responses import success
from app.times import iso_micros
from storage.base import ApiKey, Storage


def api_key_json(key: ApiKey) -> dict[str, Any]:
    return {
        "id": key.id,
        "name": key.name,
        "prefix": key.prefix,
        "created_at": iso_micros(key.created_at),
        "revoked_at": None if key.revoked_at is None else iso_micros(key.revoked_at),
    }


async def issue_api_key(storage: Storage, name: str) -> tuple[ApiKey, str]:
    """Create a key; returns it and its secret, which is never stored and cannot be shown again."""
    secret = ids.api_key_secret()
    key = await storage.create_api_key(ids.api_key_id(), name, ids.hash_secret(secret), secret[:10])
    return key, secret


async def create_api_key(request: Request) -> Response:
    require_admin(request)
    body = await json_body(request)
    reject_unknown(body, ("name",))
    name = optional_str(body, "name", max_length=200)
    if name is None:
        raise BadRequest("name is required: a label for whom the key is for.", field="name")
    key, secret = await issue_api_key(context(request).storage, name)
    return success({**api_key_json(key), "api_key": secret}, "create_api_key", 201)


async def list_api_keys(request: Request) -> Response:
    require_admin(request)
    keys = await context(request).storage.list_api_keys()
    return success([api_key_json(key) for key in keys], "list_api_keys")


async def revoke_api_key(request: Request) -> Response:
    require_admin(request)
    key_id = request.path_params["key_id"]
    ctx = context(request)
    key = await ctx.storage.revoke_api_key(key_id) if issued_shape(key_id, API_KEY_ID) else None
    if key is None:
        raise ApiKeyNotFound(key_id)
    ctx.api_keys.clear()  # keys are cached by hash, which a revoke does not know
    return success(api_key_json(key), "revoke_api_key")


routes = [
    Route("/v2/admin/api-keys", create_api_key, methods=["POST"]),
    Route("/v2/admin/api-keys", list_api_keys, methods=["GET"]),
    Route("/v2/admin/api-keys/{key_id}", revoke_api_key, methods=["DELETE"]),
]
