"""Log lines on standard output, as text or one JSON object per line, and the request id each one carries.

On a PaaS the logs are the operator's only window, and a router's request id is how a line is found
again. `begin_request` reads or makes the id and keeps it in a context variable for the formatters;
the app's one front layer (`app.main._Front`, which also answers errors, so a 500 carries the id too)
adds it to `http.response.start`. `RequestIds` does the same as a layer of its own, outside
Starlette's error middleware, when other middleware (CORS) must sit between. Either `send` wrapper is
a plain function that returns the inner `send`'s awaitable: one call per message, no coroutine.
"""

from __future__ import annotations

import itertools
import logging
import os
import re
import time
from contextvars import ContextVar
from typing import Any

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

LOG_FORMATS = ("text", "json")

# A caller's id is kept when it is 1-128 printable ASCII characters: anything else could forge log lines.
_SANE_ID = re.compile(rb"[\x20-\x7e]{1,128}")


class _Current:
    """The request a task is serving; `id` is cleared when the response ends."""

    __slots__ = ("header", "id")

    def __init__(self, request_id: bytes) -> None:
        self.id: str | None = request_id.decode("latin-1")
        # What every response to this request carries.
        self.header = (b"x-request-id", request_id)


# A holder rather than the id itself: tasks started during a request (a monitor, a delivery) copy the
# context and outlive it, and their later lines must not claim the request that started them.
_current: ContextVar[_Current | None] = ContextVar("hookstream_request", default=None)


def current_request_id() -> str | None:
    """The id of the request being served here, if any."""
    current = _current.get()
    return None if current is None else current.id


# A random prefix per process and a counter: unique ids for a fraction of what os.urandom per request costs.
_PREFIX = os.urandom(4).hex().encode()
_COUNTER = itertools.count()


def new_request_id() -> bytes:
    """A new id: 16 hex characters, the process's random half then a counter."""
    return b"%s%08x" % (_PREFIX, next(_COUNTER) & 0xFFFFFFFF)


def begin_request(scope: Scope) -> _Current:
    """Make this HTTP request's id current for log lines: the caller's when sane, else a new one.

    The caller adds `.header` to the response and sets `.id` to None once the response has ended.
    """
    request_id = None
    for name, value in scope["headers"]:
        if name == b"x-request-id":
            if _SANE_ID.fullmatch(value) and value.strip():
                request_id = value
            break
    current = _Current(request_id or new_request_id())
    _current.set(current)
    return current


class RequestIds:
    """Give every HTTP response an `X-Request-Id`: the caller's when sane, else a new one."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        current = begin_request(scope)
        header = current.header

        def send_with_id(message: Message) -> Any:
            if message["type"] == "http.response.start":
                # A new list: the one given may be a response object's own, reused.
                message["headers"] = [*message.get("headers", ()), header]
            return send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            current.id = None


def _timestamp(created: float) -> str:
    seconds = int(created)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{int((created - seconds) * 1000):03d}Z"


class JsonFormatter(logging.Formatter):
    """One JSON object per line: `time`, `level`, `logger`, `message`, and `request_id` inside a request."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": _timestamp(record.created),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        request_id = current_request_id()
        if request_id is not None:
            entry["request_id"] = request_id
        # uvicorn's access line: (client, method, path, HTTP version, status), worth having as fields.
        if record.name == "uvicorn.access" and isinstance(record.args, tuple) and len(record.args) == 5:
            client, method, path, _, status = record.args
            entry.update(client=client, method=method, path=path, status=status)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(entry, default=str).decode()


class TextFormatter(logging.Formatter):
    """uvicorn's `INFO:     message` lines, with ` request_id=…` inside a request."""

    def format(self, record: logging.LogRecord) -> str:
        line = f"{record.levelname + ':':<9} {record.getMessage()}"
        request_id = current_request_id()
        if request_id is not None:
            line += f" request_id={request_id}"
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


def log_config(log_format: str) -> dict[str, Any]:
    """A `logging.config.dictConfig` for hookstream's and uvicorn's loggers, all to standard output."""
    formatter = JsonFormatter if log_format == "json" else TextFormatter
    handler = {"class": "logging.StreamHandler", "formatter": "default", "stream": "ext://sys.stdout"}
    ours = {"handlers": ["stdout"], "level": "INFO", "propagate": False}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"default": {"()": f"{formatter.__module__}.{formatter.__qualname__}"}},
        "handlers": {"stdout": handler},
        # Libraries' own INFO lines (httpx logs every delivery) stay out; their warnings come through.
        "root": {"handlers": ["stdout"], "level": "WARNING"},
        "loggers": {"hookstream": ours, "uvicorn": ours, "uvicorn.error": {"level": "INFO"}, "uvicorn.access": ours},
    }
