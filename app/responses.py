"""The SPEC's response shapes: success envelopes and error bodies."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.responses import Response

from app.errors import HookstreamError
from app.times import iso_micros

JSON_TYPE = "application/json"


def metadata(action: str) -> dict[str, Any]:
    return {"action": action, "credits_consumed": 0, "timestamp": iso_micros()}


class JSONResponse(Response):
    """A response serialized with orjson."""

    media_type = JSON_TYPE

    def render(self, content: Any) -> bytes:
        if isinstance(content, bytes):
            return content
        return orjson.dumps(content)


def success(data: Any, action: str, status_code: int = 200) -> JSONResponse:
    """The `{"success": true, "data", "metadata"}` envelope."""
    return JSONResponse({"success": True, "data": data, "metadata": metadata(action)}, status_code=status_code)


def error_response(exc: HookstreamError, action: str = "error") -> JSONResponse:
    """The one place an error becomes the SPEC's error body."""
    error: dict[str, Any] = {"code": exc.code, "message": exc.message}
    field = getattr(exc, "field", None)
    if field is not None:
        error["field"] = field
    headers = None if exc.retry_after is None else {"Retry-After": str(exc.retry_after)}
    return JSONResponse(
        {"success": False, "error": error, "metadata": metadata(action)}, status_code=exc.status_code, headers=headers
    )
