"""uvicorn's httptools protocol with the bounds of SPEC §11: header deadline and size, body cut-off, connection cap.

uvicorn reads whatever a client sends: headers of any size for as long as the client likes, and, once
a response is sent, the rest of a body it will never use. The bounds sit here, in the protocol,
because they concern bytes and sockets before any request exists; the app never sees them. The
class is importable by path (`app._http:BoundedHttpToolsProtocol`), so every uvicorn worker
process builds its own with its own counts.

- A request's headers must arrive whole within `header_timeout` of the connection opening or of
  the first byte after the previous response; otherwise the connection is closed. Between requests
  uvicorn's keep-alive timeout governs.
- Headers past `max_header_bytes` get 431; a finished block is measured exactly, an unfinished one
  by the bytes it has taken so far (httptools buffers a header until it ends, so it must be cut off
  here).
- A declared Content-Length past `max_body_bytes` gets 413 (with `connection: close`) before a byte
  of the body is read. A response sent before its request's body was read whole (the app's 413 on a
  chunked body, a 401 on an upload) lets up to DRAIN_BYTES more of it through, so a client that sent
  a small body keeps its connection; past that the connection ends. Ending one means: stop reading
  at once, send a FIN after the response, close a second later. (Closing at once would reset the
  connection while unread bytes sit in its buffer, and the client could lose the answer.)
- Past `max_connections` open connections, a new one closes the connection idle longest (one
  waiting for headers, never one with a request in flight, such as a stream). When none is idle,
  up to `RESERVED_FOR_HEALTH` more are accepted to answer `/healthz` only (503 to anything else),
  so the platform's probe still gets through; beyond those a connection is closed at once.

A stream's response can be handed over (`hand_over`, found by the app through the scope's
`extensions`): once its stream is caught up, the protocol stops treating the connection as an HTTP
request in flight and the stream writes its chunks to the transport itself, so an idle stream holds
no task, no request scope and no parser (app/streaming.py). The protocol then only passes on what
concerns the stream: the connection lost, writing paused and resumed, the server shutting down.

On the hot path (polling over keep-alive) the cost is a few attribute writes and comparisons
per request; timers are armed only when headers arrive in pieces.
"""

from __future__ import annotations

import asyncio
import functools
import http
import logging
import resource
from collections import deque
from typing import Any, NamedTuple, Protocol

from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

from app.errors import HeadersTooLarge, HookstreamError, PayloadTooLarge, TooManyConnections
from app.responses import error_response
from app.settings import Settings

logger = logging.getLogger("hookstream")

# Connections past the cap that may still answer /healthz.
RESERVED_FOR_HEALTH = 32
# Descriptors kept free for what is not a client: database files and connections, outgoing
# deliveries (up to HOOKSTREAM_DELIVERY_CONCURRENCY more), the listening socket, logs.
FILE_HEADROOM = 128
DEFAULT_MAX_CONNECTIONS = 10_000
# How long a connection whose request body went unread stays half-open so the client reads the answer.
LINGER_SECONDS = 1.0
# How much of a body answered before it was read whole is still read (and dropped) to keep the connection.
DRAIN_BYTES = 64 * 1024
_HEALTH = b"/healthz"


class Bounds(NamedTuple):
    """The limits every connection of this process is held to."""

    header_timeout: float
    max_header_bytes: int
    max_body_bytes: int
    max_connections: int


def default_max_connections(file_limit: int, delivery_concurrency: int) -> int:
    """As many connections as descriptors allow after the server's own, up to DEFAULT_MAX_CONNECTIONS."""
    spare = file_limit - FILE_HEADROOM - delivery_concurrency - RESERVED_FOR_HEALTH
    return max(1, min(DEFAULT_MAX_CONNECTIONS, spare))


def raise_file_limit() -> int:
    """Lift this process's soft descriptor limit to the hard one (as Go's runtime does); the soft limit after."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        target = 1 << 20 if hard == resource.RLIM_INFINITY else hard
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    return soft


@functools.cache
def process_bounds() -> Bounds:
    """This process's bounds, from the environment (read once, as the app reads it)."""
    settings = Settings.from_env()
    file_limit = raise_file_limit()
    max_connections = settings.max_connections or default_max_connections(file_limit, settings.delivery_concurrency)
    if max_connections + RESERVED_FOR_HEALTH + FILE_HEADROOM > file_limit:
        logger.warning(
            "HOOKSTREAM_MAX_CONNECTIONS=%d leaves too few of the %d file descriptors free;"
            " a flood of connections may exhaust them",
            max_connections,
            file_limit,
        )
    return Bounds(settings.header_timeout, settings.max_header_bytes, settings.max_body_bytes, max_connections)


# The scope's `extensions` key under which a request finds its connection, to hand a stream's response over.
HAND_OVER = "hookstream.hand_over"


class HandedOver(Protocol):
    """A response that writes to the connection itself, told what happens to it (app/streaming.py)."""

    def connection_lost(self) -> None: ...

    def writing_paused(self) -> None: ...

    def writing_resumed(self) -> None: ...

    def server_closing(self) -> None: ...


# A handed-over connection's pipeline: never used again, and holding nothing (maxlen 0).
_NO_PIPELINE: deque[Any] = deque(maxlen=0)

# Connections waiting for a request's headers, oldest first: the ones a new connection may close at the cap.
_idle: dict[BoundedHttpToolsProtocol, None] = {}


def _raw_response(error: HookstreamError) -> bytes:
    """The error as bytes on the wire, for when no request cycle exists to send it."""
    response = error_response(error)
    head = [f"HTTP/1.1 {error.status_code} {http.HTTPStatus(error.status_code).phrase}\r\n".encode()]
    head += [name + b": " + value + b"\r\n" for name, value in response.raw_headers]
    return b"".join([*head, b"connection: close\r\n\r\n", response.body])


class _CloseAfterAnswer(asyncio.Transport):
    """The transport a refusal's response is written to: uvicorn's close after it becomes the protocol's linger."""

    def __init__(self, transport: asyncio.Transport) -> None:
        super().__init__()
        self._transport = transport

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self._transport.write(data)

    def is_closing(self) -> bool:
        return self._transport.is_closing()

    def close(self) -> None:
        pass  # BoundedHttpToolsProtocol.on_response_complete lingers instead


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, bounded in header time and size, unread body, and open connections."""

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self.bounds = process_bounds()
        self.real_app = self.app
        # True from the connection's start, and from a response's end, until a request's headers are whole.
        self.awaiting_headers = True
        # Bytes received while awaiting headers, and the size of the chunk being parsed.
        self.header_bytes = 0
        self.chunk_bytes = 0
        self.header_timer: asyncio.TimerHandle | None = None
        # Admitted past the cap: serves /healthz only.
        self.beyond_cap = False
        # A request was answered with a refusal (431, 413, 503): the connection ends after it.
        self.refused = False
        # Bytes of an unread body still let through before the connection ends; None when not draining.
        self.drain_left: int | None = None
        # The response that took this connection over (`hand_over`), and what each request's scope offers it.
        self.handed_over: HandedOver | None = None
        self.extensions = {HAND_OVER: self}

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > self.bounds.max_connections and not self._close_longest_idle():
            if len(self.connections) > self.bounds.max_connections + RESERVED_FOR_HEALTH:
                self.connections.discard(self)
                transport.abort()
                return
            self.beyond_cap = True
        _idle[self] = None
        self.header_timer = self.loop.call_later(self.bounds.header_timeout, self._too_slow)

    def _close_longest_idle(self) -> bool:
        for victim in _idle:
            if victim is not self:
                victim._stop_waiting()
                victim.connections.discard(victim)
                victim.transport.close()
                return True
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_waiting()
        super().connection_lost(exc)
        response, self.handed_over = self.handed_over, None
        if response is not None:
            response.connection_lost()

    def hand_over(self, response: HandedOver) -> asyncio.Transport | None:
        """Let `response` write the rest of the current response to the transport itself; None when it cannot.

        uvicorn's request cycle is marked complete (so the app may return without ending it) and, with
        the scope, headers and parser, let go: nothing of the request stays but the transport. What the
        client sends from then on is read and dropped, so its going away is still noticed.
        """
        cycle = self.cycle
        if cycle is None or cycle.disconnected or cycle.response_complete or self.pipeline:
            return None
        if self.transport.is_closing():
            return None
        cycle.response_complete = True
        self.handed_over = response
        self.cycle = None  # type: ignore[assignment]
        self.scope = None  # type: ignore[assignment]
        self.headers = None  # type: ignore[assignment]
        self.parser = None  # type: ignore[assignment]
        self.url = b""
        # The response tracks the transport's writing itself; an idle stream need not keep uvicorn's
        # flow control (an asyncio.Event and its deque) or a pipeline deque of its own.
        if self.flow.write_paused:
            response.writing_paused()  # the transport says so only once, and it already has
        self.flow = None  # type: ignore[assignment]
        self.pipeline = _NO_PIPELINE
        return self.transport

    def pause_writing(self) -> None:
        if self.handed_over is not None:
            self.handed_over.writing_paused()
        else:
            super().pause_writing()

    def resume_writing(self) -> None:
        if self.handed_over is not None:
            self.handed_over.writing_resumed()
        else:
            super().resume_writing()

    def shutdown(self) -> None:
        if self.handed_over is not None:
            self.handed_over.server_closing()
        else:
            super().shutdown()

    def _stop_waiting(self) -> None:
        _idle.pop(self, None)
        if self.header_timer is not None:
            self.header_timer.cancel()
            self.header_timer = None

    def data_received(self, data: bytes) -> None:
        if self.handed_over is not None:
            return  # a stream's client has nothing more to say; reading on is how its leaving is seen
        self.chunk_bytes = len(data)
        if self.drain_left is not None:
            self.drain_left -= self.chunk_bytes
            if self.drain_left < 0:
                self.drain_left = None
                self._linger()
                return
        super().data_received(data)
        if self.awaiting_headers and not self.transport.is_closing():
            # This chunk ended inside a request's headers (or before one began).
            self.header_bytes += self.chunk_bytes
            if self.header_bytes > self.bounds.max_header_bytes:
                self._stop_waiting()
                self.transport.write(_raw_response(self._headers_too_large()))
                self._linger()
            elif self.header_timer is None:
                self.header_timer = self.loop.call_later(self.bounds.header_timeout, self._too_slow)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        # Counted from the chunk this request began in: bytes of a body drained before it are not its headers.
        self.header_bytes = 0
        self.awaiting_headers = True

    def on_headers_complete(self) -> None:
        # The chunk may hold the body too: the exact size is summed only when the headers might be too large.
        too_large = self.header_bytes + self.chunk_bytes > self.bounds.max_header_bytes and (
            self._exact_header_bytes() > self.bounds.max_header_bytes
        )
        self.awaiting_headers = False
        self.header_bytes = 0
        self._stop_waiting()
        refusal: HookstreamError | None = None
        if too_large:
            refusal = self._headers_too_large()
        elif self.beyond_cap and self.url.partition(b"?")[0] != _HEALTH:
            refusal = TooManyConnections("The server has as many connections as it may; retry in a moment.")
        elif self.parser.get_method() not in (b"GET", b"HEAD"):
            declared = self._declared_length()
            if declared is not None and declared > self.bounds.max_body_bytes:
                refusal = PayloadTooLarge(f"The body is larger than the limit of {self.bounds.max_body_bytes} bytes.")
        if refusal is None:
            self.scope["extensions"] = self.extensions  # type: ignore[typeddict-item]  # ASGI types extensions as dicts
            super().on_headers_complete()
            return
        self.refused = True
        self.app = error_response(refusal)
        transport = self.transport
        self.transport = _CloseAfterAnswer(transport)
        try:
            super().on_headers_complete()
        finally:
            self.app = self.real_app
            self.transport = transport
        # Says `connection: close`; the close itself is the linger after the response.
        self.cycle.keep_alive = False

    def _exact_header_bytes(self) -> int:
        return len(self.url) + sum(len(name) + len(value) + 4 for name, value in self.headers)

    def _headers_too_large(self) -> HeadersTooLarge:
        limit = self.bounds.max_header_bytes
        return HeadersTooLarge(f"The request headers are larger than the limit of {limit} bytes.")

    def _declared_length(self) -> int | None:
        for name, value in self.headers:
            if name == b"content-length":
                return int(value) if value.isdigit() else None
        return None

    def on_message_complete(self) -> None:
        super().on_message_complete()
        if self.drain_left is not None:
            # The rest of an unread body was small: the connection goes on to its next request.
            self.drain_left = None
            self._stop_waiting()
            self._await_next_request()
            self.timeout_keep_alive_task = self.loop.call_later(
                self.timeout_keep_alive, self.timeout_keep_alive_handler
            )

    def on_response_complete(self) -> None:
        cycle = self.cycle
        super().on_response_complete()
        if self.transport.is_closing():
            return
        if self.refused:
            self._linger()
        elif cycle.more_body and cycle.response_complete:
            # Answered before its body was read whole: drain a little of it, within the header deadline.
            self.drain_left = DRAIN_BYTES
            self.header_timer = self.loop.call_later(self.bounds.header_timeout, self._too_slow)
        elif not self.pipeline:
            self._await_next_request()

    def _await_next_request(self) -> None:
        self.awaiting_headers = True
        _idle[self] = None

    def _linger(self) -> None:
        """Stop reading a body no one will use; FIN after the answer, so the client reads it, then close."""
        # Still counted as open: it holds a descriptor until it closes.
        self._stop_waiting()
        self._unset_keepalive_if_required()
        self.flow.pause_reading()
        if self.transport.can_write_eof():
            self.transport.write_eof()
        self.loop.call_later(LINGER_SECONDS, self.transport.abort)

    def _too_slow(self) -> None:
        self.header_timer = None
        if not self.transport.is_closing():
            _idle.pop(self, None)
            self.transport.close()
