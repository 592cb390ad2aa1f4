"""Errors that become the SPEC's error body.

    HookstreamError                 any error a client can see
    ├── BadRequest            400   invalid input; names the field
    ├── Unauthorized          401   no or bad credential
    ├── NotFound              404   unknown id, or another key's id
    ├── MethodNotAllowed      405
    ├── Conflict              409   state conflict
    ├── PayloadTooLarge       413
    ├── TooManyRequests       429
    └── ServiceUnavailable    503

`app.responses.error_response` is the one place that turns them into JSON.
"""

from __future__ import annotations


class HookstreamError(Exception):
    """An error with an HTTP status and a stable snake_case code."""

    status_code = 500
    code = "internal_error"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code


class BadRequest(HookstreamError):
    """The request is malformed; the message names the field."""

    status_code = 400
    code = "invalid_request"

    def __init__(self, message: str, *, field: str | None = None, code: str | None = None) -> None:
        super().__init__(message, code=code)
        self.field = field


class Unauthorized(HookstreamError):
    """No credential, or one that is not valid."""

    status_code = 401
    code = "unauthorized"


class NotFound(HookstreamError):
    """The id is unknown to this credential."""

    status_code = 404
    code = "not_found"


class MethodNotAllowed(HookstreamError):
    """The route exists but not with this method."""

    status_code = 405
    code = "method_not_allowed"


class Conflict(HookstreamError):
    """The request conflicts with the current state."""

    status_code = 409
    code = "conflict"


class PayloadTooLarge(HookstreamError):
    """The body exceeds the configured limit."""

    status_code = 413
    code = "payload_too_large"


class TooManyRequests(HookstreamError):
    """A limit was reached."""

    status_code = 429
    code = "too_many_requests"


class ServiceUnavailable(HookstreamError):
    """The server cannot serve this now."""

    status_code = 503
    code = "not_ready"
