"""`GET /openapi.json`: an OpenAPI 3.1 description of every endpoint (SPEC §9).

Written as data rather than generated from handlers: the handlers validate by
hand (to name the field in every error), so there is no model to introspect.
"""

from __future__ import annotations

import functools
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from app.responses import JSON_TYPE

_REF = "#/components/schemas/"

_SCHEMAS: dict[str, Any] = {
    "Metadata": {
        "type": "object",
        "properties": {
            "action": {"type": "string"},
            "credits_consumed": {"type": "number"},
            "timestamp": {"type": "string", "format": "date-time"},
        },
    },
    "Error": {
        "type": "object",
        "properties": {
            "success": {"const": False},
            "error": {
                "type": "object",
                "properties": {
                    "code": {"type": "string"},
                    "message": {"type": "string"},
                    "field": {"type": "string"},
                },
                "required": ["code", "message"],
            },
            "metadata": {"$ref": _REF + "Metadata"},
        },
    },
    "Envelope": {
        "type": "object",
        "properties": {
            "id": {"type": "string", "examples": ["evt_01JH8X3V9Q2C4M7W1N5R6T8Y0Z"]},
            "seq": {"type": "integer", "minimum": 1},
            "type": {"type": "string", "pattern": r"^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$", "maxLength": 138},
            "account_id": {"type": "string"},
            "timestamp": {"type": "string", "examples": ["2025-01-15T12:00:00.000Z"]},
            "version": {"const": "1.0"},
            "data": {"type": "object"},
        },
        "required": ["id", "seq", "type", "account_id", "timestamp", "version", "data"],
    },
    "NewEvent": {
        "type": "object",
        "properties": {
            "type": {"type": "string", "pattern": r"^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$", "maxLength": 128},
            "data": {"type": "object"},
            "id": {"type": "string", "description": "producer id; makes the call idempotent"},
            "timestamp": {"type": "string", "format": "date-time"},
        },
        "required": ["type", "data"],
        "additionalProperties": False,
    },
    "Account": {
        "type": "object",
        "properties": {
            "account_id": {"type": "string"},
            "name": {"type": ["string", "null"]},
            "connector": {"type": "string"},
            "monitoring": {"enum": ["idle", "running", "errored"]},
            "status_reason": {"type": ["string", "null"]},
            "active_webhooks": {"type": "integer"},
            "created_at": {"type": "string", "format": "date-time"},
        },
    },
    "Webhook": {
        "type": "object",
        "properties": {
            "webhook_id": {"type": "string", "pattern": "^[0-9a-f]{24}$"},
            "account_id": {"type": "string"},
            "mode": {"enum": ["hosted", "custom"]},
            "stream_url": {"type": "string"},
            "events_url": {"type": "string"},
            "events": {"type": "array", "items": {"type": "string"}},
            "is_active": {"type": "boolean"},
            "created_at": {"type": "string", "format": "date-time"},
            "url": {"type": "string", "description": "custom mode"},
            "secret": {
                "type": "string",
                "description": "custom mode, hmac-sha256; on create and rotate-secret only",
            },
            "public_key": {
                "type": "string",
                "pattern": "^whpk_",
                "description": "custom mode, ed25519: whpk_ + base64 of the raw 32-byte public key; always shown",
            },
            "previous_expires_at": {
                "type": ["string", "null"],
                "format": "date-time",
                "description": "rotate-secret only: until when the replaced secret also signs; null = immediate",
            },
            "compressed_delivery": {"type": "boolean", "description": "custom mode"},
            "signature_scheme": {"enum": ["hmac-sha256", "ed25519"], "description": "custom mode"},
            "max_rate": {
                "type": ["integer", "null"],
                "minimum": 1,
                "maximum": 10000,
                "description": "custom mode: deliveries per second; null = unlimited",
            },
            "ordering": {"enum": ["fast", "strict"], "description": "custom mode"},
            "status": {"enum": ["healthy", "failing", "failed", "disabled"], "description": "custom mode"},
        },
    },
    "Attempt": {
        "type": "object",
        "properties": {
            "id": {"type": "integer"},
            "event_id": {"type": "string"},
            "seq": {"type": "integer", "description": "0 for a test delivery"},
            "attempt": {"type": "integer", "minimum": 1},
            "outcome": {"enum": ["delivered", "retrying", "failed"]},
            "status_code": {"type": ["integer", "null"]},
            "latency_ms": {"type": "number"},
            "error": {"type": ["string", "null"]},
            "created_at": {"type": "string", "format": "date-time"},
            "next_attempt_at": {"type": ["string", "null"], "format": "date-time", "description": "retrying only"},
            "retry_after": {
                "type": ["string", "null"],
                "format": "date-time",
                "description": "the time a 429/503's Retry-After named, capped at HOOKSTREAM_RETRY_AFTER_MAX",
            },
        },
    },
    "Undelivered": {
        "type": "object",
        "properties": {
            "seq": {"type": "integer"},
            "id": {"type": "string"},
            "type": {"type": "string"},
            "attempts": {"type": "integer", "minimum": 0},
            "last_status_code": {"type": ["integer", "null"]},
            "next_attempt_at": {
                "type": ["string", "null"],
                "format": "date-time",
                "description": "now when still waiting for a first attempt; null when given up (schedule exhausted)",
            },
        },
        "required": ["seq", "id", "type", "attempts", "last_status_code", "next_attempt_at"],
    },
    "Page": {
        "type": "object",
        "properties": {
            "success": {"const": True},
            "events": {"type": "array", "items": {"$ref": _REF + "Envelope"}},
            "hasMore": {"type": "boolean"},
            "lastSeq": {"type": ["integer", "null"]},
            "epoch": {"type": "string"},
            "pruned": {"const": True},
        },
        "required": ["success", "events", "hasMore", "lastSeq", "epoch"],
    },
}


def _body(properties: dict[str, Any], required: tuple[str, ...] = ()) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "object", "properties": properties, "additionalProperties": False}
    if required:
        schema["required"] = list(required)
    return {"required": True, "content": {JSON_TYPE: {"schema": schema}}}


def _ok(data: dict[str, Any] | None = None, status: str = "200", description: str = "OK") -> dict[str, Any]:
    schema: dict[str, Any] = {
        "type": "object",
        "properties": {"success": {"const": True}, "data": data or {}, "metadata": {"$ref": _REF + "Metadata"}},
    }
    return {status: {"description": description, "content": {JSON_TYPE: {"schema": schema}}}}


def _ref(name: str) -> dict[str, Any]:
    return {"$ref": _REF + name}


def _list(name: str) -> dict[str, Any]:
    return {"type": "array", "items": _ref(name)}


def _path(name: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}


def _query(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "schema": schema, "description": description}


_Security = list[dict[str, list[str]]]
_CUSTOMER: _Security = [{"apiKey": []}]
_ADMIN: _Security = [{"adminToken": []}]
_WEBHOOK = [_path("webhook_id")]
_ACCOUNT = [_path("account_id")]
_FILTERS = {"type": "array", "items": {"type": "string"}, "default": ["all"]}
_EVENT_LIST = {"events": {"type": "array", "items": {"type": "object", "properties": {"id": {}, "seq": {}}}}}


def _operation(
    summary: str,
    security: _Security,
    responses: dict[str, Any],
    parameters: list[dict[str, Any]] | None = None,
    body: dict[str, Any] | None = None,
) -> dict[str, Any]:
    operation: dict[str, Any] = {"summary": summary, "security": security, "responses": dict(responses)}
    operation["responses"]["default"] = {
        "description": "Error (400, 401, 404, 405, 409, 413, 429, 503)",
        "content": {JSON_TYPE: {"schema": _ref("Error")}},
    }
    if parameters:
        operation["parameters"] = parameters
    if body:
        operation["requestBody"] = body
    return operation


def _paths() -> dict[str, Any]:
    webhook_fields = {
        "account_id": {"type": "string"},
        "url": {"type": "string", "format": "uri"},
        "events": _FILTERS,
        "compressed_delivery": {"type": "boolean"},
        "signature_scheme": {"enum": ["hmac-sha256", "ed25519"], "default": "hmac-sha256"},
        "max_rate": {"type": ["integer", "null"], "minimum": 1, "maximum": 10000, "default": None},
        "ordering": {"enum": ["fast", "strict"], "default": "fast"},
    }
    update = _operation(
        "Change events, url, compressed_delivery, max_rate or ordering; fields not given keep their value",
        _CUSTOMER,
        _ok(_ref("Webhook")),
        _WEBHOOK,
        _body({k: v for k, v in webhook_fields.items() if k not in ("account_id", "signature_scheme")}),
    )
    page_of = {"has_more": {"type": "boolean"}}
    return {
        "/healthz": {"get": _operation("The process is up", [], _ok())},
        "/readyz": {"get": _operation("The database is reachable", [], _ok())},
        "/metrics": {
            "get": {
                "summary": "Prometheus metrics",
                "responses": {"200": {"description": "text format", "content": {"text/plain": {}}}},
            }
        },
        "/v2/admin/api-keys": {
            "post": _operation(
                "Create an API key (its secret is shown once)",
                _ADMIN,
                _ok({"type": "object", "properties": {"api_key": {"type": "string"}}}, "201", "Created"),
                body=_body({"name": {"type": "string"}}, ("name",)),
            ),
            "get": _operation("List API keys", _ADMIN, _ok({"type": "array"})),
        },
        "/v2/admin/api-keys/{key_id}": {
            "delete": _operation("Revoke an API key", _ADMIN, _ok(), [_path("key_id")]),
        },
        "/v2/accounts": {
            "post": _operation(
                "Register a connected account",
                _CUSTOMER,
                _ok(_ref("Account"), "201", "Created"),
                body=_body(
                    {"account_id": {"type": "string"}, "name": {"type": "string"}, "connector": {"type": "string"}}
                ),
            ),
            "get": _operation("List the key's accounts", _CUSTOMER, _ok(_list("Account"))),
        },
        "/v2/accounts/{account_id}": {
            "get": _operation("An account", _CUSTOMER, _ok(_ref("Account")), _ACCOUNT),
            "delete": _operation(
                "Delete an account and its webhooks; its usage record stays", _CUSTOMER, _ok(), _ACCOUNT
            ),
        },
        "/v2/accounts/{account_id}/usage": {
            "get": _operation("Monitoring time and credits, per UTC day", _CUSTOMER, _ok(), _ACCOUNT),
        },
        "/v2/accounts/{account_id}/events": {
            "post": _operation(
                'Ingest one event, or {"events": [...]} up to 1000 (all-or-nothing); answers once durable',
                _ADMIN,
                _ok({"type": "object", "properties": _EVENT_LIST}, "201", "Created"),
                _ACCOUNT,
                {
                    "required": True,
                    "content": {
                        JSON_TYPE: {
                            "schema": {
                                "oneOf": [
                                    _ref("NewEvent"),
                                    {
                                        "type": "object",
                                        "properties": {"events": {"type": "array", "items": _ref("NewEvent")}},
                                        "required": ["events"],
                                    },
                                ]
                            }
                        }
                    },
                },
            ),
        },
        "/v2/event-types": {"get": _operation("The event-type catalog", _CUSTOMER, _ok({"type": "array"}))},
        "/v2/webhooks": {
            "post": _operation(
                "Create a webhook (hosted without url, custom with url); active at once",
                _CUSTOMER,
                _ok(_ref("Webhook"), "201", "Created"),
                body=_body(webhook_fields, ("account_id",)),
            ),
            "get": _operation(
                "List the key's webhooks",
                _CUSTOMER,
                _ok(_list("Webhook")),
                [_query("account_id", {"type": "string"}, "only this account's webhooks")],
            ),
        },
        "/v2/webhooks/mock-payload": {
            "post": _operation(
                "An example envelope of a type from the catalog",
                _CUSTOMER,
                _ok(_ref("Envelope")),
                body=_body({"type": {"type": "string"}}, ("type",)),
            ),
        },
        "/v2/webhooks/{webhook_id}": {
            "get": _operation("A webhook", _CUSTOMER, _ok(_ref("Webhook")), _WEBHOOK),
            "patch": update,
            "put": update,
            "delete": _operation("Delete a webhook; its id is then unknown", _CUSTOMER, _ok(), _WEBHOOK),
        },
        "/v2/webhooks/{webhook_id}/stop": {
            "post": _operation("Stop (idempotent); open streams end", _CUSTOMER, _ok(_ref("Webhook")), _WEBHOOK)
        },
        "/v2/webhooks/{webhook_id}/start": {
            "post": _operation("Start (idempotent)", _CUSTOMER, _ok(_ref("Webhook")), _WEBHOOK)
        },
        "/v2/webhooks/{webhook_id}/events": {
            "get": {
                **_operation(
                    "Poll the webhook's feed after a cursor",
                    _CUSTOMER,
                    {"200": {"description": "A page", "content": {JSON_TYPE: {"schema": _ref("Page")}}}},
                    [
                        *_WEBHOOK,
                        _query("afterSeq", {"type": "integer", "minimum": 0}, "cursor; omitted = oldest retained"),
                        _query("limit", {"type": "integer", "minimum": 1, "default": 100}, "at most 1000"),
                        _query("wait", {"type": "number", "minimum": 0, "maximum": 60}, "long-poll seconds"),
                    ],
                ),
            }
        },
        "/v2/webhooks/{webhook_id}/stream": {
            "get": {
                "summary": "Server-Sent Events: the feed after Last-Event-ID, afterSeq, or from the live tail",
                "security": [*_CUSTOMER, {"streamToken": []}],
                "parameters": [
                    *_WEBHOOK,
                    _query("afterSeq", {"type": "integer", "minimum": 0}, "cursor when no Last-Event-ID"),
                    _query("token", {"type": "string"}, "a stream token, for browsers"),
                    {"name": "Last-Event-ID", "in": "header", "required": False, "schema": {"type": "string"}},
                ],
                "responses": {
                    "200": {"description": "text/event-stream", "content": {"text/event-stream": {}}},
                    "204": {"description": "The webhook is stopped: do not reconnect"},
                    "default": {"description": "Error", "content": {JSON_TYPE: {"schema": _ref("Error")}}},
                },
            }
        },
        "/v2/webhooks/{webhook_id}/stream-token": {
            "post": _operation(
                "A signed, expiring token for this webhook's stream (EventSource cannot send headers)",
                _CUSTOMER,
                _ok({"type": "object", "properties": {"token": {}, "expires_at": {}}}),
                _WEBHOOK,
            )
        },
        "/v2/webhooks/{webhook_id}/test": {
            "post": _operation(
                "Hosted: append webhook.test to this feed only. Custom: deliver one at once",
                _CUSTOMER,
                _ok(),
                _WEBHOOK,
            )
        },
        "/v2/webhooks/{webhook_id}/rotate-secret": {
            "post": _operation(
                "Replace the signing secret; the old one also signs until previous_expires_at (custom)",
                _CUSTOMER,
                _ok(_ref("Webhook")),
                _WEBHOOK,
                {
                    "required": False,
                    "content": {
                        JSON_TYPE: {
                            "schema": {
                                "type": "object",
                                "properties": {
                                    "overlap": {
                                        "type": "string",
                                        "description": "a duration (24h, 30m, 0s = immediate), at most 30d;"
                                        " default HOOKSTREAM_SECRET_OVERLAP",
                                    }
                                },
                                "additionalProperties": False,
                            }
                        }
                    },
                },
            )
        },
        "/v2/webhooks/{webhook_id}/attempts": {
            "get": _operation(
                "Recent delivery attempts, newest first (custom)",
                _CUSTOMER,
                _ok(
                    {
                        "type": "object",
                        "properties": {
                            "attempts": _list("Attempt"),
                            **page_of,
                            "next_before": {"type": ["integer", "null"]},
                        },
                    }
                ),
                [
                    *_WEBHOOK,
                    _query("before", {"type": "integer", "minimum": 1}, "attempts with an id below this"),
                    _query("limit", {"type": "integer", "minimum": 1, "default": 50}, "at most 500"),
                    _query("outcome", {"enum": ["delivered", "failed", "pending"]}, "only attempts of this outcome"),
                ],
            )
        },
        "/v2/webhooks/{webhook_id}/undelivered": {
            "get": _operation(
                "Feed events with no successful attempt, in seq order (custom)",
                _CUSTOMER,
                _ok(
                    {
                        "type": "object",
                        "properties": {
                            "events": _list("Undelivered"),
                            **page_of,
                            "next_after_seq": {"type": ["integer", "null"]},
                        },
                    }
                ),
                [
                    *_WEBHOOK,
                    _query("afterSeq", {"type": "integer", "minimum": 0}, "cursor: events after this seq"),
                    _query("limit", {"type": "integer", "minimum": 1, "default": 50}, "at most 500"),
                ],
            )
        },
        "/v2/webhooks/{webhook_id}/recover": {
            "post": _operation(
                "Re-deliver the feed after a seq, or from a time (custom); exactly one of afterSeq or since",
                _CUSTOMER,
                _ok(),
                _WEBHOOK,
                {
                    "required": True,
                    "content": {
                        JSON_TYPE: {
                            "schema": {
                                "oneOf": [
                                    {
                                        "type": "object",
                                        "properties": {"afterSeq": {"type": "integer", "minimum": 0}},
                                        "required": ["afterSeq"],
                                        "additionalProperties": False,
                                    },
                                    {
                                        "type": "object",
                                        "properties": {"since": {"type": "string", "format": "date-time"}},
                                        "required": ["since"],
                                        "additionalProperties": False,
                                    },
                                ]
                            }
                        }
                    },
                },
            )
        },
    }


@functools.cache
def document() -> bytes:
    """The OpenAPI document, serialized once."""
    return orjson.dumps(
        {
            "openapi": "3.1.0",
            "info": {"title": "hookstream", "version": "2", "description": "Webhook event server."},
            "paths": _paths(),
            "components": {
                "schemas": _SCHEMAS,
                "securitySchemes": {
                    "apiKey": {"type": "apiKey", "in": "header", "name": "x-api-key"},
                    "adminToken": {"type": "http", "scheme": "bearer"},
                    "streamToken": {"type": "apiKey", "in": "query", "name": "token"},
                },
            },
        }
    )


async def openapi(request: Request) -> Response:
    return Response(document(), media_type=JSON_TYPE)


routes = [Route("/openapi.json", openapi, methods=["GET"])]
