"""Reading requests: JSON bodies, query parameters and headers, each failure a clear 4xx."""

from __future__ import annotations

import re
from typing import Any

import orjson
from starlette.requests import ClientDisconnect, Request

from app.context import context
from app.cursors import parse_seq
from app.errors import BadRequest, InvalidJson, PayloadTooLarge

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
# Numbers are spelled one way in every query parameter and header: ASCII digits, and for seconds an optional
# decimal fraction. Python's float() would also take ' 5', '1_0', Arabic-Indic digits, '+5', '1e3', 'nan', 'inf'.
_SECONDS = re.compile(r"\d{1,9}(?:\.\d{1,9})?", re.ASCII)
# Where a request's parsed query string is kept, so each parameter read does not split it again.
_QUERY = "hookstream.query"


async def json_body(request: Request, *, required: bool = True) -> dict[str, Any]:
    """The request's JSON object body; 413 past the body limit, 400 when not a JSON object."""
    limit = context(request).settings.max_body_bytes
    declared = header_value(request, b"content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"The body is larger than the limit of {limit} bytes.")
    # The ASGI messages read directly: Starlette's `request.stream()` is an async generator, which cost
    # more than the rest of reading a one-event body.
    chunks: list[bytes] = []
    size = 0
    receive = request.receive
    while True:
        message = await receive()
        if message["type"] != "http.request":
            raise ClientDisconnect()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"The body is larger than the limit of {limit} bytes.")
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    raw = chunks[0] if len(chunks) == 1 else b"".join(chunks)
    if not raw.strip():
        if required:
            raise InvalidJson("The request needs a JSON object body.")
        return {}
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidJson(f"The body is not valid JSON: {exc}.") from None
    if not isinstance(body, dict):
        raise InvalidJson("The body must be a JSON object.")
    return body


def query_value(request: Request, name: str) -> str | None:
    """A query parameter (the last one of that name), None when absent.

    Polling reads two or three parameters per request, thousands of times a second; a query
    string with nothing to unescape is split here instead of through `urllib.parse.parse_qsl`,
    which Starlette's `query_params` uses and which costs more than the rest of the parsing.
    """
    scope = request.scope
    params: dict[str, str] | None = scope.get(_QUERY)
    if params is None:
        raw: bytes = scope["query_string"]
        if b"%" in raw or b"+" in raw:
            params = dict(request.query_params)
        else:
            params = dict(part.partition("=")[::2] for part in raw.decode("latin-1").split("&"))
        scope[_QUERY] = params
    return params.get(name)


def header_value(request: Request, name: bytes) -> str | None:
    """A request header by its lower-case name (ASGI servers lower-case them), without building `Headers`."""
    for key, value in request.scope["headers"]:
        if key == name:
            return value.decode("latin-1")  # type: ignore[no-any-return]
    return None


def query_int(request: Request, name: str, *, minimum: int) -> int | None:
    """An integer query parameter ≥ `minimum`, None when absent; 400 naming it otherwise."""
    raw = query_value(request, name)
    return None if raw is None else parse_seq(raw, f"Query parameter {name}", minimum=minimum, field=name)


def query_seconds(request: Request, name: str, *, maximum: float) -> float | None:
    """A number of seconds from 0 to `maximum` (`2` or `2.5`), None when absent; 400 naming it otherwise."""
    raw = query_value(request, name)
    if raw is None:
        return None
    if _SECONDS.fullmatch(raw) is None or float(raw) > maximum:
        raise BadRequest(
            f"Query parameter {name} must be a number of seconds from 0 to {maximum:g}"
            f" (digits, optionally a decimal fraction such as 2.5), not {raw[:40]!r}.",
            field=name,
        )
    return float(raw)


def optional_str(body: dict[str, Any], name: str, *, max_length: int = 255) -> str | None:
    """A string field of the body, None when absent or null; 400 naming it otherwise."""
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, str) or not 1 <= len(value) <= max_length:
        raise BadRequest(f"{name} must be a string of 1 to {max_length} characters.", field=name)
    if _CONTROL.search(value):
        # PostgreSQL cannot store NUL in text, and no name or id needs a control character.
        raise BadRequest(f"{name} must not contain control characters.", field=name)
    return value


def reject_unknown(body: dict[str, Any], allowed: tuple[str, ...], where: str = "") -> None:
    """400 naming the first field that is not one of `allowed`."""
    for name in body:
        if name not in allowed:
            raise BadRequest(
                f"Unknown field {where}{name!r}; allowed fields: {', '.join(allowed)}.", field=f"{where}{name}"
            )
