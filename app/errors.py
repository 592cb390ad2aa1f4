"""Errors that become the SPEC's error body; each code is defined here and nowhere else.

    HookstreamError                  500  internal_error       any error a client can see
    ├── HttpError                    any  http_error           one the router raised (status from it)
    ├── BadRequest                   400  invalid_request      invalid input; names the field
    │   ├── InvalidJson                   invalid_json
    │   ├── InvalidUrl                    invalid_url
    │   └── NotCustomMode                 not_custom_mode
    ├── Unauthorized                 401  unauthorized
    │   ├── MissingApiKey                 missing_api_key
    │   ├── InvalidApiKey                 invalid_api_key
    │   ├── MissingAdminToken             missing_admin_token
    │   ├── InvalidAdminToken             invalid_admin_token
    │   ├── InvalidStreamToken            invalid_stream_token
    │   └── ExpiredStreamToken            expired_stream_token
    ├── NotFound                     404  not_found
    │   ├── RouteNotFound                 route_not_found
    │   ├── AccountNotFound               account_not_found
    │   ├── WebhookNotFound               webhook_not_found
    │   └── ApiKeyNotFound                api_key_not_found
    ├── MethodNotAllowed             405  method_not_allowed
    ├── Conflict                     409  conflict
    │   ├── CursorAhead                   cursor_ahead
    │   ├── AccountIdTaken                account_exists
    │   ├── AccountNotMonitored           account_not_monitored
    │   └── EventIdTaken                  event_id_conflict
    ├── PayloadTooLarge              413  body_too_large
    ├── HeadersTooLarge              431  headers_too_large
    ├── TooManyRequests              429  too_many_requests
    │   ├── TooManyStreams                too_many_streams
    │   └── RateLimited                   rate_limited
    └── ServiceUnavailable           503  not_ready
        ├── ShuttingDown                  shutting_down
        ├── TooManyConnections            too_many_connections
        └── StorageUnavailable            storage_unavailable

`app.responses.error_response` is the one place that turns them into JSON, with a `Retry-After`
header when the error carries `retry_after` (every 429 and 503 does). The "not found"
errors build their message from the id, so every route words them the same way.
"""

from __future__ import annotations


class HookstreamError(Exception):
    """An error with an HTTP status and a stable snake_case code."""

    status_code = 500
    code = "internal_error"
    # Seconds a client should wait before trying again, sent as Retry-After; None sends none.
    retry_after: int | None = None

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class HttpError(HookstreamError):
    """An HTTP error the router raised, with its status."""

    code = "http_error"

    def __init__(self, message: str, status_code: int) -> None:
        super().__init__(message)
        self.status_code = status_code


class BadRequest(HookstreamError):
    """The request is malformed; the message names the field."""

    status_code = 400
    code = "invalid_request"

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class InvalidJson(BadRequest):
    """The body is missing, not JSON, or not a JSON object."""

    code = "invalid_json"


class InvalidUrl(BadRequest):
    """A delivery URL the address policy refuses."""

    code = "invalid_url"


class NotCustomMode(BadRequest):
    """The operation needs a custom-mode webhook."""

    code = "not_custom_mode"


class Unauthorized(HookstreamError):
    """No credential, or one that is not valid."""

    status_code = 401
    code = "unauthorized"


class MissingApiKey(Unauthorized):
    """No `x-api-key` header."""

    code = "missing_api_key"


class InvalidApiKey(Unauthorized):
    """An API key that is unknown or revoked."""

    code = "invalid_api_key"


class MissingAdminToken(Unauthorized):
    """No `Authorization` header on an admin route."""

    code = "missing_admin_token"


class InvalidAdminToken(Unauthorized):
    """An admin token that is not the operator's."""

    code = "invalid_admin_token"


class InvalidStreamToken(Unauthorized):
    """A stream token that is forged, malformed or for another webhook."""

    code = "invalid_stream_token"


class ExpiredStreamToken(Unauthorized):
    """A stream token past its expiry."""

    code = "expired_stream_token"


class NotFound(HookstreamError):
    """The id is unknown to this credential."""

    status_code = 404
    code = "not_found"


class RouteNotFound(NotFound):
    """No route has this path."""

    code = "route_not_found"


class AccountNotFound(NotFound):
    """No account with this id for this key (it may exist for another)."""

    code = "account_not_found"

    def __init__(self, account_id: str) -> None:
        super().__init__(f"No account {account_id!r}.")


class WebhookNotFound(NotFound):
    """No webhook with this id for this key (it may exist for another)."""

    code = "webhook_not_found"

    def __init__(self, webhook_id: str) -> None:
        super().__init__(f"No webhook {webhook_id!r}.")


class ApiKeyNotFound(NotFound):
    """No API key with this id."""

    code = "api_key_not_found"

    def __init__(self, key_id: str) -> None:
        super().__init__(f"No API key {key_id!r}.")


class MethodNotAllowed(HookstreamError):
    """The route exists but not with this method."""

    status_code = 405
    code = "method_not_allowed"


class Conflict(HookstreamError):
    """The request conflicts with the current state."""

    status_code = 409
    code = "conflict"


class CursorAhead(Conflict):
    """A cursor past the newest seq this log ever assigned: it belongs to another log."""

    code = "cursor_ahead"


class AccountIdTaken(Conflict):
    """An account with this id already exists (account ids are global)."""

    code = "account_exists"


class AccountNotMonitored(Conflict):
    """Ingest for an account with no active webhook."""

    code = "account_not_monitored"


class EventIdTaken(Conflict):
    """A producer-given event id that belongs to another account's event."""

    code = "event_id_conflict"


class PayloadTooLarge(HookstreamError):
    """The body exceeds the configured limit."""

    status_code = 413
    code = "body_too_large"


class HeadersTooLarge(HookstreamError):
    """The request's headers exceed the configured limit."""

    status_code = 431
    code = "headers_too_large"


class TooManyRequests(HookstreamError):
    """A limit was reached."""

    status_code = 429
    code = "too_many_requests"
    retry_after = 1


class TooManyStreams(TooManyRequests):
    """The API key has as many open streams as it may."""

    code = "too_many_streams"


class RateLimited(TooManyRequests):
    """The API key (or, for ingest, the account) has used its rate limit for now."""

    code = "rate_limited"

    def __init__(self, message: str, *, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class ServiceUnavailable(HookstreamError):
    """The server cannot serve this now."""

    status_code = 503
    code = "not_ready"
    retry_after = 1


class ShuttingDown(ServiceUnavailable):
    """The server is shutting down; reconnect elsewhere or in a moment."""

    code = "shutting_down"


class TooManyConnections(ServiceUnavailable):
    """The server holds as many connections as it may; only /healthz is answered past that."""

    code = "too_many_connections"


class StorageUnavailable(ServiceUnavailable):
    """The database cannot take this now (a full disk, PostgreSQL gone); nothing was stored, try again."""

    code = "storage_unavailable"
    retry_after = 2

    def __init__(self) -> None:
        super().__init__("The database cannot take this request now; nothing was stored. Retry after a moment.")
