"""Errors the client raises.

HookstreamError                 any error of this library: `status`, `code`, `message`, `field`
├── TransportError              the server could not be reached, or the connection broke
├── ApiError                    the server answered with an error body
│   ├── BadRequest        400   invalid input; `field` names it
│   ├── Unauthorized      401   no API key, or one the server refuses
│   ├── NotFound          404   unknown id (or one that belongs to another key)
│   ├── Conflict          409   state conflict
│   │   └── CursorAhead   409   the cursor is past the log's newest seq: it belongs to another log
│   ├── PayloadTooLarge   413
│   ├── RateLimited       429   `retry_after` seconds, when the server said
│   └── Unavailable       503   `retry_after` seconds, when the server said
├── FeedPruned                  retention deleted feed events after the cursor
├── EpochChanged                the log was recreated: the cursor means nothing there
└── InvalidSignature            a delivery's signature, timestamp or body does not check out
"""

from __future__ import annotations


class HookstreamError(Exception):
    """Any error of this library."""

    status: int | None = None
    code = "error"

    def __init__(self, message: str, *, status: int | None = None, code: str | None = None, field: str | None = None):
        super().__init__(message)
        self.message = message
        if status is not None:
            self.status = status
        if code is not None:
            self.code = code
        self.field = field

    def __str__(self) -> str:
        return self.message


class TransportError(HookstreamError):
    """The server could not be reached, or the connection broke."""

    code = "transport_error"


class ApiError(HookstreamError):
    """The server answered with an error body."""

    code = "api_error"

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: str | None = None,
        field: str | None = None,
        retry_after: float | None = None,
    ):
        super().__init__(message, status=status, code=code, field=field)
        self.retry_after = retry_after


class BadRequest(ApiError):
    """The request was invalid; `field` names what."""

    status = 400
    code = "invalid_request"


class Unauthorized(ApiError):
    """No API key, or one the server refuses."""

    status = 401
    code = "unauthorized"


class NotFound(ApiError):
    """The id is unknown to this API key."""

    status = 404
    code = "not_found"


class Conflict(ApiError):
    """The request conflicts with the current state."""

    status = 409
    code = "conflict"


class CursorAhead(Conflict):
    """The cursor is beyond the newest seq the log ever assigned: it belongs to another log."""

    code = "cursor_ahead"


class PayloadTooLarge(ApiError):
    """The request body is over the server's limit."""

    status = 413
    code = "payload_too_large"


class RateLimited(ApiError):
    """A limit was reached; wait `retry_after` seconds."""

    status = 429
    code = "too_many_requests"


class Unavailable(ApiError):
    """The server cannot serve this now; wait `retry_after` seconds."""

    status = 503
    code = "not_ready"


class FeedPruned(HookstreamError):
    """Retention deleted feed events after the cursor; the feed goes on from `oldest_seq`."""

    code = "pruned"

    def __init__(self, after_seq: int, oldest_seq: int | None) -> None:
        where = f"; the feed goes on from seq {oldest_seq}" if oldest_seq is not None else ""
        super().__init__(f"Retention deleted feed events after seq {after_seq}{where}.")
        self.after_seq = after_seq
        self.oldest_seq = oldest_seq


class EpochChanged(HookstreamError):
    """The log was recreated (a new epoch, or a cursor beyond its head): restart from seq 0."""

    code = "epoch_changed"

    def __init__(self, expected: str | None, current: str | None) -> None:
        super().__init__(
            f"The event log was recreated (epoch {expected or 'unknown'} is now {current or 'unknown'}):"
            " the cursor belongs to the old log; restart from seq 0."
        )
        self.expected = expected
        self.current = current


class InvalidSignature(HookstreamError):
    """A delivery's signature, timestamp or body does not check out."""

    code = "invalid_signature"


_BY_STATUS: dict[int, type[ApiError]] = {
    400: BadRequest,
    401: Unauthorized,
    404: NotFound,
    409: Conflict,
    413: PayloadTooLarge,
    429: RateLimited,
    503: Unavailable,
}


def api_error(
    status: int, code: str | None, message: str, field: str | None, retry_after: float | None = None
) -> ApiError:
    """The exception for an error answer: by code where one has its own class, else by status."""
    cls = CursorAhead if code == "cursor_ahead" else _BY_STATUS.get(status, ApiError)
    return cls(message, status=status, code=code, field=field, retry_after=retry_after)
