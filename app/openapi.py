"""`GET /openapi.json`: an OpenAPI 3.1 description of every endpoint, response and input constraint (SPEC §9, §11).

Written as data rather than generated from handlers: the handlers validate by hand (to name the
field in every error), so there is no model to introspect. What the handlers enforce is restated
here exactly — patterns, lengths, ranges, enums, unknown fields refused — because a fuzzer and a
generated client trust the document: a schema looser than the server makes them send what it
refuses, a stricter one hides what it accepts. The event filters and connectors depend on the
server's catalog and settings, so the document is built per server (and then cached).
"""

from __future__ import annotations

import functools
import itertools
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from app.catalog import MAX_FILTERS, MAX_TYPE_LENGTH, TRUNCATED_SUFFIX, EventCatalog
from app.connectors import allowed_connectors
from app.context import context
from app.cursors import MAX_SEQ
from app.responses import JSON_TYPE
from app.routes.attempts import MAX_LIMIT as MAX_ATTEMPTS
from app.routes.events import JSON_LINES_TYPES, MAX_BATCH, MAX_LIMIT
from app.routes.webhooks import MAX_RATE, ORDERINGS, OVERLAP
from app.signing import SCHEMES

_REF = "#/components/schemas/"
# ECMA-262 patterns (JSON Schema's dialect) for the server's own regexes in app/auth.py, app/catalog.py
# and app/envelopes.py; those use \A…\Z, which JSON Schema spells ^…$.
ACCOUNT_ID_PATTERN = "^[A-Za-z0-9][A-Za-z0-9_.:@+=-]{0,127}$"
WEBHOOK_ID_PATTERN = "^[0-9a-f]{24}$"
TYPE_PATTERN = r"^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$"
PRINTABLE_PATTERN = "^[!-~]+$"
NO_CONTROL_PATTERN = r"^[^\u0000-\u001F\u007F]+$"
CONNECTOR_PATTERN = "^[A-Za-z_][A-Za-z0-9_.:]{0,199}$"

# Every error code each status can carry on any route (app/errors.py defines them).
CUSTOMER_AUTH = ("missing_api_key", "invalid_api_key")
ADMIN_AUTH = ("missing_admin_token", "invalid_admin_token")
RATE_LIMITED = "rate_limited"
BODY_ERRORS = ("invalid_json", "invalid_request")


def _ref(name: str) -> dict[str, Any]:
    return {"$ref": _REF + name}


def _object(properties: dict[str, Any], *optional: str) -> dict[str, Any]:
    """A closed object whose properties are all required except `optional`."""
    return {
        "type": "object",
        "properties": properties,
        "required": [name for name in properties if name not in optional],
        "additionalProperties": False,
    }


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    return {"anyOf": [schema, {"type": "null"}]}


_TIME = {"type": "string", "format": "date-time"}
_SEQ = {"type": "integer", "minimum": 1, "maximum": MAX_SEQ}
_CURSOR = {"type": "integer", "minimum": 0, "maximum": MAX_SEQ}
_MAX_RATE = {"type": ["integer", "null"], "minimum": 1, "maximum": MAX_RATE}
_ENVELOPE_TIME = {"type": "string", "pattern": r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$"}
_STORED_TYPE = {"type": "string", "pattern": TYPE_PATTERN, "maxLength": MAX_TYPE_LENGTH + len(TRUNCATED_SUFFIX)}


def _envelope(seq: dict[str, Any]) -> dict[str, Any]:
    return _object(
        {
            "id": {"type": "string", "minLength": 1},
            "seq": seq,
            "type": _STORED_TYPE,
            "account_id": {"type": "string", "minLength": 1},
            "timestamp": _ENVELOPE_TIME,
            "version": {"const": "1.0"},
            "data": {"type": "object"},
        }
    )


SCHEMAS: dict[str, Any] = {
    "Metadata": _object(
        {"action": {"type": "string"}, "credits_consumed": {"type": "number"}, "timestamp": {"type": "string"}}
    ),
    "Error": _object(
        {
            "success": {"const": False},
            "error": _object(
                {
                    "code": {"type": "string", "pattern": "^[a-z][a-z0-9_]*$"},
                    "message": {"type": "string", "minLength": 1},
                    "field": {"type": "string", "description": "the input at fault, for 400s"},
                },
                "field",
            ),
            "metadata": _ref("Metadata"),
        }
    ),
    "Envelope": _envelope(_SEQ),
    "NewEvent": _object(
        {
            "type": {"type": "string", "pattern": TYPE_PATTERN, "minLength": 1, "maxLength": MAX_TYPE_LENGTH},
            "data": {"type": "object"},
            "id": {
                "type": ["string", "null"],
                "pattern": PRINTABLE_PATTERN,
                "minLength": 1,
                "maxLength": 255,
                "description": "a producer id: the same id again returns the stored event and appends nothing",
            },
            "timestamp": {"type": ["string", "null"], "format": "date-time", "description": "default: now"},
        },
        "id",
        "timestamp",
    ),
    "Account": _object(
        {
            "account_id": {"type": "string", "pattern": ACCOUNT_ID_PATTERN},
            "name": {"type": ["string", "null"]},
            "connector": {"type": "string"},
            "monitoring": {"enum": ["idle", "running", "errored"]},
            "status_reason": {"type": ["string", "null"]},
            "active_webhooks": {"type": "integer", "minimum": 0},
            "created_at": _TIME,
        }
    ),
    "Webhook": _object(
        {
            "webhook_id": {"type": "string", "pattern": WEBHOOK_ID_PATTERN},
            "account_id": {"type": "string"},
            "mode": {"enum": ["hosted", "custom"]},
            "stream_url": {"type": "string"},
            "events_url": {"type": "string"},
            "events": {"type": "array", "items": {"type": "string"}, "minItems": 1},
            "is_active": {"type": "boolean"},
            "created_at": _TIME,
            "updated_at": _TIME,
            "url": {"type": "string", "description": "custom mode"},
            "compressed_delivery": {"type": "boolean", "description": "custom mode"},
            "status": {"enum": ["healthy", "failing", "failed", "disabled"], "description": "custom mode"},
            "signature_scheme": {"enum": list(SCHEMES), "description": "custom mode"},
            "max_rate": {**_MAX_RATE, "description": "custom mode: deliveries per second; null = unlimited"},
            "ordering": {"enum": list(ORDERINGS), "description": "custom mode"},
            "secret": {
                "type": "string",
                "pattern": "^whsec_",
                "description": "custom mode, hmac-sha256: on create and rotate-secret only",
            },
            "public_key": {
                "type": "string",
                "pattern": "^whpk_",
                "description": "custom mode, ed25519: whpk_ + base64 of the raw 32-byte public key; always shown",
            },
            "previous_expires_at": {
                **_nullable(_TIME),
                "description": "rotate-secret only: until when the replaced secret also signs; null = it does not",
            },
        },
        "url",
        "compressed_delivery",
        "status",
        "signature_scheme",
        "max_rate",
        "ordering",
        "secret",
        "public_key",
        "previous_expires_at",
    ),
    "ApiKey": _object(
        {
            "id": {"type": "string"},
            "name": {"type": "string"},
            "prefix": {"type": "string"},
            "created_at": _TIME,
            "revoked_at": _nullable(_TIME),
        }
    ),
    "NewApiKey": _object(
        {
            "id": {"type": "string"},
            "name": {"type": "string"},
            "prefix": {"type": "string"},
            "created_at": _TIME,
            "revoked_at": {"type": "null"},
            "api_key": {"type": "string", "description": "the secret, shown this once"},
        }
    ),
    "EventType": _object(
        {
            "type": {"type": "string", "pattern": TYPE_PATTERN},
            "description": {"type": "string"},
            "data": {"type": "object"},
            "aliases": {"type": "array", "items": {"type": "string"}},
        }
    ),
    "Usage": _object(
        {
            "account_id": {"type": "string"},
            "monitoring": {"enum": ["idle", "running", "errored"]},
            "credits_per_day": {"type": "number", "minimum": 0},
            "credits_consumed": {"type": "number", "minimum": 0},
            "daily": {
                "type": "array",
                "items": _object(
                    {"date": {"type": "string", "format": "date"}, "credits": {"type": "number", "minimum": 0}}
                ),
            },
            "intervals": {"type": "array", "items": _object({"started_at": _TIME, "stopped_at": _nullable(_TIME)})},
        }
    ),
    "Attempt": _object(
        {
            "id": {"type": "integer"},
            "event_id": {"type": "string"},
            "seq": {"type": "integer", "minimum": 0},
            "attempt": {"type": "integer", "minimum": 1},
            "outcome": {"enum": ["delivered", "retrying", "failed"]},
            "status_code": {"type": ["integer", "null"]},
            "latency_ms": {"type": ["number", "null"]},
            "error": {"type": ["string", "null"]},
            "created_at": _TIME,
            "next_attempt_at": {**_nullable(_TIME), "description": "when the event is tried again; null if it is not"},
            "retry_after": {
                **_nullable(_TIME),
                "description": "the time a 429/503's Retry-After named, capped at HOOKSTREAM_RETRY_AFTER_MAX",
            },
        }
    ),
    "Undelivered": _object(
        {
            "seq": {"type": "integer", "minimum": 1},
            "id": {"type": "string"},
            "type": {"type": "string"},
            "attempts": {"type": "integer", "minimum": 0},
            "last_status_code": {"type": ["integer", "null"]},
            "next_attempt_at": {
                **_nullable(_TIME),
                "description": "now while waiting for a first attempt; null once given up (schedule exhausted)",
            },
        }
    ),
    "Page": _object(
        {
            "success": {"const": True},
            "events": {"type": "array", "items": _ref("Envelope")},
            "hasMore": {"type": "boolean"},
            "lastSeq": {"type": ["integer", "null"]},
            "epoch": {"type": "string"},
            "pruned": {"const": True, "description": "retention deleted feed events after afterSeq"},
        },
        "pruned",
    ),
}

_STREAM_EVENT = _object(
    {
        "event": {"type": "string", "description": "the event type, or `pruned`"},
        "data": {
            "type": "string",
            "description": "the envelope as one line of JSON; for `pruned`, afterSeq and oldestSeq",
        },
        "id": {"type": "string", "pattern": "^[0-9]+$", "description": "the seq; absent on `pruned`"},
        "retry": {"type": "integer"},
    },
    "id",
    "retry",
)


def filter_values(catalog: EventCatalog) -> list[str]:
    """Every filter the server accepts: `all`, each type and alias, and each pattern matching a known type.

    A pattern puts `*` in place of whole segments, so the patterns that match a type are its
    segment lists with any subset of segments starred: a finite set, listed exactly.
    """
    values: dict[str, None] = {"all": None}
    for event_type in catalog.types:
        values.update(dict.fromkeys((event_type.type, *event_type.aliases)))
    for name in catalog.names:
        segments = name.split(".")
        for starred in itertools.product((False, True), repeat=len(segments)):
            if any(starred):
                values[".".join("*" if star else part for part, star in zip(segments, starred, strict=True))] = None
    return list(values)


def _error_response(status: int, codes: tuple[str, ...], description: str) -> dict[str, Any]:
    schema = {
        "allOf": [_ref("Error")],
        "properties": {"error": {"properties": {"code": {"enum": list(codes)}}}},
    }
    response: dict[str, Any] = {"description": description, "content": {JSON_TYPE: {"schema": schema}}}
    if status in (429, 503):
        response["headers"] = {
            "Retry-After": {
                "description": "seconds to wait before trying again",
                "required": True,
                "schema": {"type": "string", "pattern": "^[0-9]+$"},
            }
        }
    return response


_STATUS_TEXT = {
    400: "Invalid input; `field` names it",
    401: "No credential, or one that is not valid",
    404: "Unknown id, or one that belongs to another API key",
    409: "The request conflicts with the current state",
    413: "The body is larger than HOOKSTREAM_MAX_BODY_BYTES",
    431: "The request headers are larger than HOOKSTREAM_MAX_HEADER_BYTES",
    429: "A limit was reached; retry after Retry-After seconds",
    503: "Not available now; retry after Retry-After seconds",
}


def _ok(data: dict[str, Any], status: int = 200, links: dict[str, Any] | None = None) -> dict[str, Any]:
    schema = _object({"success": {"const": True}, "data": data, "metadata": _ref("Metadata")})
    response: dict[str, Any] = {
        "description": "Created" if status == 201 else "OK",
        "content": {JSON_TYPE: {"schema": schema}},
    }
    if links:
        response["links"] = links
    return {str(status): response}


def _body(properties: dict[str, Any], *required: str, optional_body: bool = False) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "object", "properties": properties, "additionalProperties": False}
    if required:
        schema["required"] = list(required)
    return {"required": not optional_body, "content": {JSON_TYPE: {"schema": schema}}}


def _path(name: str, pattern: str, description: str) -> dict[str, Any]:
    schema = {"type": "string", "pattern": pattern}
    return {"name": name, "in": "path", "required": True, "schema": schema, "description": description}


def _query(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "schema": schema, "description": description}


# A polling page as JSON Lines: OpenAPI 3.1 has no schema for the items of a sequence, so the body is a string
# described in words, and each of its lines is an `Envelope`.
_LINES_PAGE = {
    "type": "string",
    "description": "JSON Lines: one Envelope (components/schemas/Envelope) per line, each line ending in a newline,"
    " in seq order; empty when the page has no events",
}
_PAGE_HEADERS = {
    "Vary": {
        "description": "names Accept: the page's representation depends on it",
        "required": True,
        "schema": {"type": "string"},
    },
    "Hookstream-Count": {
        "description": "JSON Lines pages: the number of events in the page (lines in the body)",
        "schema": {"type": "integer", "minimum": 0, "maximum": MAX_LIMIT},
    },
    "Hookstream-Has-More": {
        "description": "JSON Lines pages: hasMore, whether more feed events follow the page's last event",
        "schema": {"type": "boolean"},
    },
    "Hookstream-Last-Seq": {
        "description": "JSON Lines pages: lastSeq, the seq of the page's last event; absent when it has none",
        "schema": _SEQ,
    },
    "Hookstream-Epoch": {"description": "JSON Lines pages: epoch, the log's epoch", "schema": {"type": "string"}},
    "Hookstream-Pruned": {
        "description": "JSON Lines pages: sent (as true) when retention deleted feed events after afterSeq",
        "schema": {"type": "boolean", "const": True},
    },
}

# The one spelling app/requests.py accepts for `wait`: 1-9 digits, an optional fraction of 1-9, at most 60.
_WAIT = {
    "type": "string",
    "pattern": r"^(?:(?:0{0,8}[0-9]|0{0,7}[1-5][0-9])(?:\.[0-9]{1,9})?|0{0,7}60(?:\.0{1,9})?)$",
}
_WEBHOOK = [_path("webhook_id", WEBHOOK_ID_PATTERN, "24 lowercase hex characters")]
_ACCOUNT = [_path("account_id", ACCOUNT_ID_PATTERN, "the account's id")]
_CUSTOMER: list[dict[str, list[str]]] = [{"apiKey": []}]
_ADMIN: list[dict[str, list[str]]] = [{"adminToken": []}]


def _operation(
    operation_id: str,
    summary: str,
    security: list[dict[str, list[str]]],
    responses: dict[str, Any],
    errors: dict[int, tuple[str, ...]],
    *,
    parameters: list[dict[str, Any]] | None = None,
    body: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """An operation with its success responses and, per error status, the codes it can answer with."""
    errors = dict(errors)
    if _CUSTOMER[0] in security:
        errors[401] = CUSTOMER_AUTH + errors.get(401, ())
        errors[429] = (RATE_LIMITED, *errors.get(429, ()))
    elif security == _ADMIN:
        errors[401] = ADMIN_AUTH
    if body is not None:
        errors[400] = tuple(dict.fromkeys(BODY_ERRORS + errors.get(400, ())))
        errors[413] = ("body_too_large",)
    # The HTTP layer answers these before any route runs (app/_http.py): headers past the limit on any
    # operation, and, at the connection cap, every operation but /healthz.
    errors[431] = ("headers_too_large",)
    if operation_id != "healthz":
        errors[503] = (*errors.get(503, ()), "too_many_connections")
    if security:
        # Every credentialed operation reads or writes the database (a customer's key is looked up in it):
        # while the database cannot take the call, it answers 503 storage_unavailable (SPEC §11).
        errors[503] = tuple(dict.fromkeys(("storage_unavailable", *errors[503])))
    operation: dict[str, Any] = {"operationId": operation_id, "summary": summary, "security": security}
    if parameters:
        operation["parameters"] = parameters
    if body is not None:
        operation["requestBody"] = body
    operation["responses"] = {
        **responses,
        **{
            str(status): _error_response(status, codes, _STATUS_TEXT[status])
            for status, codes in sorted(errors.items())
        },
    }
    return operation


def _webhook_links() -> dict[str, Any]:
    """What a new webhook's id feeds: every operation on `/v2/webhooks/{webhook_id}`, and ingest into its account."""
    webhook_id = {"webhook_id": "$response.body#/data/webhook_id"}
    targets = [
        "get_webhook",
        "update_webhook",
        "replace_webhook",
        "stop_webhook",
        "start_webhook",
        "poll_events",
        "stream",
        "create_stream_token",
        "test_webhook",
        "rotate_secret",
        "list_attempts",
        "recover_webhook",
        "delete_webhook",
    ]
    links: dict[str, Any] = {target: {"operationId": target, "parameters": webhook_id} for target in targets}
    links["ingest_events"] = {
        "operationId": "ingest_events",
        "parameters": {"account_id": "$response.body#/data/account_id"},
    }
    links["list_account_webhooks"] = {
        "operationId": "list_webhooks",
        "parameters": {"account_id": "$response.body#/data/account_id"},
    }
    return links


def _account_links() -> dict[str, Any]:
    account_id = {"account_id": "$response.body#/data/account_id"}
    links: dict[str, Any] = {
        target: {"operationId": target, "parameters": account_id}
        for target in ("get_account", "get_usage", "ingest_events", "delete_account")
    }
    links["create_webhook"] = {"operationId": "create_webhook", "requestBody": account_id}
    return links


def paths(catalog: EventCatalog, connectors: tuple[str, ...]) -> dict[str, Any]:
    """Every path the server routes, each operation with every response it can give."""
    filters = {
        "type": "array",
        "items": {"enum": filter_values(catalog)},
        "minItems": 1,
        "maxItems": MAX_FILTERS,
        "description": 'event types, aliases, "all", or patterns where * stands for one segment',
    }
    compressed = {"type": "boolean", "description": "custom mode: gzip the body (signed over the compressed bytes)"}
    url = {
        "type": "string",
        "minLength": 1,
        "maxLength": 2048,
        "format": "uri",
        "description": "custom mode: an https:// URL resolving to public addresses only (SPEC §8)",
    }
    create_webhook_body = _body(
        {
            "account_id": {"type": "string", "pattern": ACCOUNT_ID_PATTERN},
            "url": {"type": ["string", "null"], **{k: v for k, v in url.items() if k != "type"}},
            "events": {**filters, "default": ["all"]},
            "compressed_delivery": compressed,
            "signature_scheme": {"enum": list(SCHEMES), "default": "hmac-sha256", "description": "custom mode"},
            "max_rate": {**_MAX_RATE, "default": None, "description": "custom mode: deliveries per second"},
            "ordering": {"enum": list(ORDERINGS), "default": "fast", "description": "custom mode"},
        },
        "account_id",
    )
    update_body = _body(
        {
            "events": {"type": ["array", "null"], **{k: v for k, v in filters.items() if k != "type"}},
            "url": {"type": ["string", "null"], **{k: v for k, v in url.items() if k != "type"}},
            "compressed_delivery": compressed,
            "max_rate": {**_MAX_RATE, "description": "custom mode: deliveries per second; null = unlimited"},
            "ordering": {"enum": list(ORDERINGS), "description": "custom mode"},
        }
    )
    webhook_errors: dict[int, tuple[str, ...]] = {404: ("webhook_not_found",)}
    webhook_ok = _ok(_ref("Webhook"))

    def update(operation_id: str) -> dict[str, Any]:
        return _operation(
            operation_id,
            "Change events, url or compressed_delivery; fields not given (or null) keep their value",
            _CUSTOMER,
            webhook_ok,
            {400: ("invalid_url",), **webhook_errors},
            parameters=_WEBHOOK,
            body=update_body,
        )

    type_names = [name for entry in catalog.types for name in (entry.type, *entry.aliases)]
    name = {"type": "string", "minLength": 1, "maxLength": 200, "pattern": NO_CONTROL_PATTERN}
    new_event = _ref("NewEvent")
    epoch_header = {
        "Hookstream-Epoch": {"description": "the log's epoch", "required": True, "schema": {"type": "string"}}
    }
    return {
        "/healthz": {
            "get": _operation("healthz", "The process is up", [], _ok(_object({"status": {"const": "ok"}})), {})
        },
        "/readyz": {
            "get": _operation(
                "readyz",
                "The database is reachable",
                [],
                _ok(_object({"status": {"const": "ready"}})),
                {503: ("not_ready",)},
            )
        },
        "/metrics": {
            "get": {
                "operationId": "metrics",
                "summary": "Prometheus metrics",
                "security": [],
                "responses": {
                    "200": {
                        "description": "Prometheus text format",
                        "content": {"text/plain": {"schema": {"type": "string"}}},
                    }
                },
            }
        },
        "/openapi.json": {
            "get": {
                "operationId": "openapi",
                "summary": "This document",
                "security": [],
                "responses": {
                    "200": {"description": "OpenAPI 3.1", "content": {JSON_TYPE: {"schema": {"type": "object"}}}}
                },
            }
        },
        "/v2/admin/api-keys": {
            "post": _operation(
                "create_api_key",
                "Create an API key; its secret (`api_key`) is shown once",
                _ADMIN,
                _ok(
                    _ref("NewApiKey"),
                    201,
                    {
                        "revoke_api_key": {
                            "operationId": "revoke_api_key",
                            "parameters": {"key_id": "$response.body#/data/id"},
                        }
                    },
                ),
                {},
                body=_body({"name": name}, "name"),
            ),
            "get": _operation(
                "list_api_keys", "List API keys", _ADMIN, _ok({"type": "array", "items": _ref("ApiKey")}), {}
            ),
        },
        "/v2/admin/api-keys/{key_id}": {
            "delete": _operation(
                "revoke_api_key",
                "Revoke an API key",
                _ADMIN,
                _ok(_ref("ApiKey")),
                {404: ("api_key_not_found",)},
                parameters=[_path("key_id", "^[!-~]{1,64}$", "the key's id (not its secret)")],
            ),
        },
        "/v2/accounts": {
            "post": _operation(
                "create_account",
                "Register a connected account; the body is optional (an id is generated)",
                _CUSTOMER,
                _ok(_ref("Account"), 201, _account_links()),
                {409: ("account_exists",)},
                body=_body(
                    {
                        "account_id": {"type": ["string", "null"], "pattern": ACCOUNT_ID_PATTERN},
                        "name": {**name, "type": ["string", "null"]},
                        "connector": {
                            "anyOf": [
                                {"type": "string", "enum": list(connectors), "pattern": CONNECTOR_PATTERN},
                                {"type": "null"},
                            ],
                            "description": "one the server enables (HOOKSTREAM_CONNECTORS)",
                        },
                    },
                    optional_body=True,
                ),
            ),
            "get": _operation(
                "list_accounts",
                "List the key's accounts",
                _CUSTOMER,
                _ok({"type": "array", "items": _ref("Account")}),
                {},
            ),
        },
        "/v2/accounts/{account_id}": {
            "get": _operation(
                "get_account",
                "An account",
                _CUSTOMER,
                _ok(_ref("Account")),
                {404: ("account_not_found",)},
                parameters=_ACCOUNT,
            ),
            "delete": _operation(
                "delete_account",
                "Delete an account and its webhooks; its usage record stays",
                _CUSTOMER,
                _ok(
                    _object(
                        {
                            "account_id": {"type": "string"},
                            "deleted": {"const": True},
                            "webhooks_deleted": {
                                "type": "array",
                                "items": {"type": "string", "pattern": WEBHOOK_ID_PATTERN},
                            },
                        }
                    )
                ),
                {404: ("account_not_found",)},
                parameters=_ACCOUNT,
            ),
        },
        "/v2/accounts/{account_id}/usage": {
            "get": _operation(
                "get_usage",
                "Monitoring time and credits, per UTC day (also for a deleted account)",
                _CUSTOMER,
                _ok(_ref("Usage")),
                {404: ("account_not_found",)},
                parameters=_ACCOUNT,
            ),
        },
        "/v2/accounts/{account_id}/events": {
            "post": _operation(
                "ingest_events",
                f'Ingest one event, or {{"events": [...]}} of up to {MAX_BATCH} (all-or-nothing); answers once durable',
                _ADMIN,
                _ok(
                    _object(
                        {
                            "events": {
                                "type": "array",
                                "items": _object({"id": {"type": "string"}, "seq": _SEQ}),
                                "minItems": 1,
                            }
                        }
                    ),
                    201,
                ),
                {
                    404: ("account_not_found",),
                    409: ("account_not_monitored", "event_id_conflict"),
                    429: (RATE_LIMITED,),
                    503: ("storage_unavailable",),
                },
                parameters=_ACCOUNT,
                body={
                    "required": True,
                    "content": {
                        JSON_TYPE: {
                            "schema": {
                                "oneOf": [
                                    new_event,
                                    _object(
                                        {
                                            "events": {
                                                "type": "array",
                                                "items": new_event,
                                                "minItems": 1,
                                                "maxItems": MAX_BATCH,
                                            }
                                        }
                                    ),
                                ]
                            }
                        }
                    },
                },
            ),
        },
        "/v2/event-types": {
            "get": _operation(
                "list_event_types",
                "The event-type catalog",
                _CUSTOMER,
                _ok({"type": "array", "items": _ref("EventType")}),
                {},
            )
        },
        "/v2/webhooks": {
            "post": _operation(
                "create_webhook",
                "Create a webhook (hosted without url, custom with url); active at once",
                _CUSTOMER,
                _ok(_ref("Webhook"), 201, _webhook_links()),
                {400: ("invalid_url",), 404: ("account_not_found",)},
                body=create_webhook_body,
            ),
            "get": _operation(
                "list_webhooks",
                "List the key's webhooks",
                _CUSTOMER,
                _ok({"type": "array", "items": _ref("Webhook")}),
                {404: ("account_not_found",)},
                parameters=[
                    _query(
                        "account_id", {"type": "string", "pattern": ACCOUNT_ID_PATTERN}, "only this account's webhooks"
                    )
                ],
            ),
        },
        "/v2/webhooks/mock-payload": {
            "post": _operation(
                "mock_payload",
                "An example envelope (seq 0) of a type or alias from the catalog",
                _CUSTOMER,
                _ok(_envelope({"const": 0})),
                {},
                body=_body({"type": {"enum": type_names}}, "type"),
            ),
        },
        "/v2/webhooks/{webhook_id}": {
            "get": _operation("get_webhook", "A webhook", _CUSTOMER, webhook_ok, webhook_errors, parameters=_WEBHOOK),
            "patch": update("update_webhook"),
            "put": update("replace_webhook"),
            "delete": _operation(
                "delete_webhook",
                "Delete a webhook; its id is then unknown",
                _CUSTOMER,
                _ok(
                    _object(
                        {"webhook_id": {"type": "string", "pattern": WEBHOOK_ID_PATTERN}, "deleted": {"const": True}}
                    )
                ),
                webhook_errors,
                parameters=_WEBHOOK,
            ),
        },
        "/v2/webhooks/{webhook_id}/stop": {
            "post": _operation(
                "stop_webhook",
                "Stop (idempotent); open streams end",
                _CUSTOMER,
                webhook_ok,
                webhook_errors,
                parameters=_WEBHOOK,
            )
        },
        "/v2/webhooks/{webhook_id}/start": {
            "post": _operation(
                "start_webhook", "Start (idempotent)", _CUSTOMER, webhook_ok, webhook_errors, parameters=_WEBHOOK
            )
        },
        "/v2/webhooks/{webhook_id}/events": {
            "get": _operation(
                "poll_events",
                "Poll the webhook's feed after a cursor",
                _CUSTOMER,
                {
                    "200": {
                        "description": "A page: JSON, or JSON Lines when Accept prefers application/x-ndjson or"
                        " application/jsonl (the page's own fields then in Hookstream-* headers); any other Accept"
                        " gets JSON, and errors are JSON whatever Accept says",
                        "headers": _PAGE_HEADERS,
                        "content": {
                            JSON_TYPE: {"schema": _ref("Page")},
                            **{media: {"schema": _LINES_PAGE} for media in JSON_LINES_TYPES},
                        },
                    }
                },
                {400: ("invalid_request",), **webhook_errors, 409: ("cursor_ahead",)},
                parameters=[
                    *_WEBHOOK,
                    _query("afterSeq", _CURSOR, "cursor; omitted = the oldest retained event"),
                    _query("limit", {**_SEQ, "default": 100}, f"page size; above {MAX_LIMIT} it is {MAX_LIMIT}"),
                    _query("wait", _WAIT, "long-poll seconds, 0 to 60: digits, optionally a decimal fraction"),
                ],
            )
        },
        "/v2/webhooks/{webhook_id}/stream": {
            "get": _operation(
                "stream",
                "Server-Sent Events: the feed after Last-Event-ID, afterSeq, or from the live tail",
                [*_CUSTOMER, {"streamToken": []}],
                {
                    "200": {
                        "description": "`retry: 3000`, then one message per feed event; `: ping` while idle",
                        "headers": epoch_header,
                        "content": {"text/event-stream": {"schema": _STREAM_EVENT}},
                    },
                    "204": {"description": "The webhook is stopped: do not reconnect", "headers": epoch_header},
                },
                {
                    400: ("invalid_request",),
                    401: ("invalid_stream_token", "expired_stream_token"),
                    **webhook_errors,
                    409: ("cursor_ahead",),
                    429: ("too_many_streams",),
                    503: ("shutting_down",),
                },
                parameters=[
                    *_WEBHOOK,
                    _query("afterSeq", _CURSOR, "cursor when no Last-Event-ID is sent"),
                    _query("token", {"type": "string"}, "a stream token (for EventSource, which cannot send headers)"),
                    {
                        "name": "Last-Event-ID",
                        "in": "header",
                        "required": False,
                        "schema": _CURSOR,
                        "description": "the seq of the last event received; browsers send it on reconnect",
                    },
                ],
            )
        },
        "/v2/webhooks/{webhook_id}/stream-token": {
            "post": _operation(
                "create_stream_token",
                "A signed, expiring token for this webhook's stream (EventSource cannot send headers)",
                _CUSTOMER,
                _ok(
                    _object(
                        {
                            "token": {"type": "string"},
                            "expires_at": _ENVELOPE_TIME,
                            "webhook_id": {"type": "string", "pattern": WEBHOOK_ID_PATTERN},
                            "stream_url": {"type": "string"},
                        }
                    )
                ),
                webhook_errors,
                parameters=_WEBHOOK,
            )
        },
        "/v2/webhooks/{webhook_id}/test": {
            "post": _operation(
                "test_webhook",
                "Hosted: append webhook.test to this feed only (201). Custom: deliver one at once (200)",
                _CUSTOMER,
                {
                    **_ok(
                        _object(
                            {
                                "status_code": {"type": ["integer", "null"]},
                                "latency_ms": {"type": "number"},
                                "ok": {"type": "boolean"},
                                "error": {"type": ["string", "null"]},
                            }
                        )
                    ),
                    **_ok(_object({"id": {"type": "string"}, "seq": _SEQ, "type": {"const": "webhook.test"}}), 201),
                },
                webhook_errors,
                parameters=_WEBHOOK,
            )
        },
        "/v2/webhooks/{webhook_id}/rotate-secret": {
            "post": _operation(
                "rotate_secret",
                "Replace the signing secret; the old one also signs until previous_expires_at (custom mode)",
                _CUSTOMER,
                webhook_ok,
                {400: ("not_custom_mode", "invalid_request"), **webhook_errors},
                parameters=_WEBHOOK,
                body=_body(
                    {
                        "overlap": {
                            "type": "string",
                            "pattern": "^" + OVERLAP.pattern + "$",
                            "description": "a duration (24h, 30m, 0s = immediate), at most 30d;"
                            " default HOOKSTREAM_SECRET_OVERLAP",
                        }
                    },
                    optional_body=True,
                ),
            )
        },
        "/v2/webhooks/{webhook_id}/attempts": {
            "get": _operation(
                "list_attempts",
                "Recent delivery attempts, newest first (custom mode)",
                _CUSTOMER,
                _ok(
                    _object(
                        {
                            "attempts": {"type": "array", "items": _ref("Attempt")},
                            "has_more": {"type": "boolean"},
                            "next_before": {"type": ["integer", "null"]},
                        }
                    )
                ),
                {400: ("not_custom_mode", "invalid_request"), **webhook_errors},
                parameters=[
                    *_WEBHOOK,
                    _query("limit", {**_SEQ, "default": 50}, f"page size; above {MAX_ATTEMPTS} it is {MAX_ATTEMPTS}"),
                    _query("before", _SEQ, "an attempt id: only older attempts (next_before of the previous page)"),
                    _query("outcome", {"enum": ["delivered", "failed", "pending"]}, "only attempts of this outcome"),
                ],
            )
        },
        "/v2/webhooks/{webhook_id}/undelivered": {
            "get": _operation(
                "list_undelivered",
                "Feed events with no successful attempt, in seq order (custom mode)",
                _CUSTOMER,
                _ok(
                    _object(
                        {
                            "events": {"type": "array", "items": _ref("Undelivered")},
                            "has_more": {"type": "boolean"},
                            "next_after_seq": {"type": ["integer", "null"]},
                        }
                    )
                ),
                {400: ("not_custom_mode", "invalid_request"), **webhook_errors},
                parameters=[
                    *_WEBHOOK,
                    _query("afterSeq", _CURSOR, "only events after this seq (next_after_seq of the previous page)"),
                    _query("limit", {**_SEQ, "default": 50}, f"page size; above {MAX_ATTEMPTS} it is {MAX_ATTEMPTS}"),
                ],
            )
        },
        "/v2/webhooks/{webhook_id}/recover": {
            "post": _operation(
                "recover_webhook",
                "Re-deliver the feed after a seq (custom mode)",
                _CUSTOMER,
                _ok(
                    _object(
                        {
                            "webhook_id": {"type": "string", "pattern": WEBHOOK_ID_PATTERN},
                            "after_seq": {"type": "integer", "minimum": 0},
                            "is_active": {"type": "boolean"},
                            "since": _TIME,
                        },
                        "since",
                    )
                ),
                {400: ("not_custom_mode",), **webhook_errors, 409: ("cursor_ahead",)},
                parameters=_WEBHOOK,
                body={
                    "required": True,
                    "content": {
                        JSON_TYPE: {
                            "schema": {
                                "description": "exactly one of afterSeq (a seq) or since (a time)",
                                "oneOf": [
                                    _object({"afterSeq": _CURSOR}),
                                    _object({"since": {"type": "string", "format": "date-time"}}),
                                ],
                            }
                        }
                    },
                },
            )
        },
    }


@functools.lru_cache(maxsize=8)
def document(catalog: EventCatalog, connectors: tuple[str, ...]) -> bytes:
    """The OpenAPI document for a server with this catalog and these connectors, serialized once."""
    return orjson.dumps(
        {
            "openapi": "3.1.0",
            "info": {
                "title": "hookstream",
                "version": "2",
                "description": (
                    "Webhook event server. Every error has the body "
                    '`{"success": false, "error": {"code", "message", "field"?}, "metadata"}`. A method a path does '
                    "not have answers 405 `method_not_allowed` with `Allow`; an unknown path, 404 `route_not_found`."
                ),
            },
            "paths": paths(catalog, connectors),
            "components": {
                "schemas": SCHEMAS,
                "securitySchemes": {
                    "apiKey": {"type": "apiKey", "in": "header", "name": "x-api-key"},
                    "adminToken": {"type": "http", "scheme": "bearer"},
                    "streamToken": {"type": "apiKey", "in": "query", "name": "token"},
                },
            },
        }
    )


async def openapi(request: Request) -> Response:
    ctx = context(request)
    return Response(document(ctx.catalog, allowed_connectors(ctx.settings)), media_type=JSON_TYPE)


routes = [Route("/openapi.json", openapi, methods=["GET"])]
