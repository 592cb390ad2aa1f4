"""Server-sent event streams of a webhook's feed (SPEC §5.4).

One loop serves catch-up and live alike. A stream keeps a cursor (the seq of
the last event it sent) and registers with the hub *before* its first read.
Then it reads the feed after the cursor — from the hub's in-memory tail when
that reaches back far enough, else from storage a page at a time — until it
is caught up, and waits for the hub's signal. Registering
first means an event committed at any moment is either in a read or wakes the
next one (no gap); every read starting after the cursor means no duplicate.

A wake-up is the hot path of fan-out — one commit wakes every stream of its
webhook — so it is kept to a bare future: the SSE message comes ready-made
from the hub's tail, and there is no timer per wait. Instead one heartbeat
task per process looks over the open streams a few times per interval and
wakes those that have sent nothing for a whole interval, to send `: ping`.

A stream is one task of its own (the request's task only awaits it), plus a small
one that waits for the client to go away.
A slow reader costs no memory here: storage is the buffer, and a stream holds
at most one page. A client that stops reading would hold its connection
forever, though: when more than `HOOKSTREAM_STREAM_BACKLOG` events join its
feed while a write to it has been pending for over a second, the stream is
cut, and the client resumes from its cursor.

uvicorn tells an app nothing when SIGTERM arrives; it waits for open responses
to finish. `Streams.start` chains a signal handler in front of the server's
own, so open streams end at once and the process exits promptly.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import signal
import threading
import time
from collections.abc import Callable
from types import FrameType
from typing import Any

import anyio
import orjson
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from app._eager import start_eagerly
from app.context import Context
from app.errors import ShuttingDown, TooManyStreams
from app.hub import TailFrame, event_frame
from app.tokens import StreamTokens

logger = logging.getLogger("hookstream.streaming")

PAGE_SIZE = 500
RETRY_MS = 3000
# How long one write to a client may stay pending before its backlog counts against it.
STALL_SECONDS = 1.0
# Heartbeat checks per interval: an idle stream's pings are then 1 to 1.25 intervals apart.
HEARTBEAT_CHECKS = 4
PING = b": ping\n\n"
_SIGNALS = (signal.SIGINT, signal.SIGTERM)
_SignalHandler = Callable[[int, FrameType | None], Any] | int | None


def pruned_frame(after_seq: int, oldest_seq: int) -> bytes:
    """The message that says retention deleted events after the cursor; no `id:`, so the cursor stays."""
    data = orjson.dumps({"afterSeq": after_seq, "oldestSeq": oldest_seq})
    return b"event: pruned\ndata: %b\n\n" % data


class Streams:
    """Every open stream of this process: the per-key limit, stream tokens, and ending them all at shutdown."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.tokens = StreamTokens.from_settings(ctx.settings)
        self.closing = False
        self._per_key: dict[str, int] = {}
        self._open: set[EventStream] = set()
        self._handlers: dict[int, tuple[_SignalHandler, _SignalHandler]] = {}
        self._heartbeat: asyncio.Task[None] | None = None

    def reserve(self, key_id: str) -> None:
        """Count a new stream against its API key; 429 past the limit, 503 while shutting down."""
        if self.closing:
            raise ShuttingDown("The server is shutting down; reconnect in a moment.")
        count = self._per_key.get(key_id, 0)
        limit = self.ctx.settings.max_streams_per_key
        if count >= limit:
            raise TooManyStreams(f"This API key already has {count} open streams, the most allowed; close one first.")
        self._per_key[key_id] = count + 1

    def release(self, key_id: str) -> None:
        count = self._per_key.get(key_id, 0) - 1
        if count > 0:
            self._per_key[key_id] = count
        else:
            self._per_key.pop(key_id, None)

    def opened(self, stream: EventStream) -> None:
        self._open.add(stream)
        self.ctx.metrics.open_streams.inc()

    def closed(self, stream: EventStream) -> None:
        self._open.discard(stream)
        self.ctx.metrics.open_streams.dec()
        self.release(stream.key_id)

    def close(self) -> None:
        """End every open stream now and refuse new ones: the server is going away."""
        if self.closing:
            return
        self.closing = True
        if self._open:
            logger.info("shutting down: ending %d open streams", len(self._open))
        for stream in list(self._open):
            stream.server_closing()

    async def _beat(self) -> None:
        """Forever: wake every stream that has sent nothing for a heartbeat interval, so it sends `: ping`."""
        interval = self.ctx.settings.heartbeat_seconds
        while True:
            await asyncio.sleep(interval / HEARTBEAT_CHECKS)
            quiet_since = time.monotonic() - interval
            for stream in self._open:
                stream.ping_if_quiet_since(quiet_since)

    async def start(self) -> None:
        """Start the heartbeat; chain a SIGTERM/SIGINT handler in front of the server's, so streams end at once."""
        self._heartbeat = asyncio.create_task(self._beat(), name="hookstream-stream-heartbeat")
        if threading.current_thread() is not threading.main_thread():
            return  # signal handlers can only be set from the main thread; the lifespan's stop still ends streams
        loop = asyncio.get_running_loop()
        for signum in _SIGNALS:
            previous = signal.getsignal(signum)
            handler = functools.partial(self._on_signal, loop, previous)
            signal.signal(signum, handler)
            self._handlers[signum] = (previous, handler)

    async def stop(self) -> None:
        self.close()
        for signum, (previous, handler) in self._handlers.items():
            if signal.getsignal(signum) is handler:
                signal.signal(signum, previous)
        self._handlers.clear()
        if self._heartbeat is not None:
            self._heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._heartbeat
            self._heartbeat = None

    def _on_signal(
        self, loop: asyncio.AbstractEventLoop, previous: _SignalHandler, signum: int, frame: FrameType | None
    ) -> None:
        loop.call_soon_threadsafe(self.close)
        if callable(previous):
            previous(signum, frame)
        elif previous == signal.SIG_DFL:
            signal.signal(signum, signal.SIG_DFL)
            signal.raise_signal(signum)


class EventStream(Response):
    """The `text/event-stream` response of one webhook's feed, from a cursor on."""

    media_type = "text/event-stream"

    def __init__(
        self, streams: Streams, webhook_id: str, key_id: str, cursor: int, epoch: str, pruned_through: int | None
    ) -> None:
        self.status_code = 200
        self.background = None
        self.init_headers({"cache-control": "no-cache", "x-accel-buffering": "no", "hookstream-epoch": epoch})
        self.streams = streams
        self.webhook_id = webhook_id
        self.key_id = key_id
        self._cursor = cursor
        # Set only when retention deleted events after the cursor: the first message then says so.
        self._pruned_through = pruned_through
        # The wake-up: a flag, plus a future only while the loop waits (cheaper than an asyncio.Event).
        self._woken = False
        self._waiter: asyncio.Future[None] | None = None
        self._ping = False
        self._last_sent = time.monotonic()
        self._scope = anyio.CancelScope()
        self._changed = False
        self._ending = False
        self._closing = False
        self._abandoned = False
        self._send_started: float | None = None
        self._missed = 0
        # Set once the stream has started: the `send` a caught-up stream's events are written with directly.
        self._send_fn: Send | None = None
        # A direct write the transport made wait (its buffer is full); the loop finishes it before anything else.
        self._inflight: asyncio.Future[None] | None = None

    @property
    def cursor(self) -> int:
        """The seq of the last event this stream has sent."""
        return self._cursor

    def feed_grew(self, count: int) -> None:
        """Send the new events now if the stream is caught up, else wake the loop; cut a stuck client's stream."""
        # A waiter means the loop is parked with nothing left to do: the hub may then write for it.
        if self._waiter is not None and self._write_now():
            return
        self._wake()
        if self._send_started is None:
            return
        self._missed += count
        if (
            self._missed > self.streams.ctx.settings.stream_backlog
            and time.monotonic() - self._send_started > STALL_SECONDS
            and not self._abandoned
        ):
            logger.warning(
                "ending a stream of webhook %s: its client stopped reading and %d events are waiting",
                self.webhook_id,
                self._missed,
            )
            self._abandon()

    def webhook_changed(self) -> None:
        self._changed = True
        self._wake()

    def ping_if_quiet_since(self, since: float) -> None:
        """Have the loop send `: ping` when it has sent nothing after `since` and is not mid-write."""
        if self._last_sent <= since and self._send_started is None:
            self._ping = True
            self._wake()

    def server_closing(self) -> None:
        self._closing = True
        self._wake()
        if self._send_started is not None:
            # A client that is not reading would hold the shutdown up; drop it.
            self._abandon()

    def _write_now(self) -> bool:
        """Write the hub's new events from here, without waking the stream's task; False to wake it instead.

        Fan-out is one commit waking every stream of a webhook, and a task wake-up plus a trip
        through the loop cost as much as the write itself. A stream parked with nothing else to
        do (no ping, no change of its webhook, no closing) only needs the new frames written,
        and uvicorn's `send` writes to the transport without suspending unless the client has
        stopped reading. So it is started eagerly here (`app._eager`): finished at once, the
        events are sent; suspended, the rest runs as a task the loop awaits before its next write.
        """
        send = self._send_fn
        if (
            send is None
            or self._inflight is not None
            or self._changed
            or self._closing
            or self._ping
            or self._pruned_through is not None
        ):
            return False
        tail = self.streams.ctx.hub.tail_after(self.webhook_id, self._cursor)
        if not tail:
            return tail is not None  # [] is nothing new; None means storage has to be read
        body = tail[0].frame if len(tail) == 1 else b"".join([item.frame for item in tail])
        try:
            rest = start_eagerly(send({"type": "http.response.body", "body": body, "more_body": True}))
        except Exception:
            return False  # the loop's own send will meet the same error where it can handle it
        if rest is not None:
            self._wait_for_write(rest)
        self._advance(tail)
        return True

    def _wait_for_write(self, write: asyncio.Future[None]) -> None:
        """Track a direct write the transport made wait: it counts as a pending send until it is done."""
        self._inflight = write
        self._send_started = time.monotonic()
        write.add_done_callback(self._write_done)

    def _write_done(self, write: asyncio.Future[None]) -> None:
        self._send_started = None
        self._missed = 0
        if not write.cancelled() and write.exception() is None:
            self._inflight = None
        else:
            self._wake()  # the loop awaits it and ends the stream with its error

    def _advance(self, sent: list[TailFrame]) -> None:
        self._cursor = sent[-1].seq
        self._last_sent = time.monotonic()
        self.streams.ctx.metrics.stream_events_sent.inc(len(sent))

    def _wake(self) -> None:
        self._woken = True
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def _woken_up(self) -> None:
        """Return once `_wake` has been called since the loop last looked."""
        if not self._woken:
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None

    def _abandon(self) -> None:
        """End the stream without its closing chunk; the server then closes the connection."""
        self._abandoned = True
        self._scope.cancel()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        streams = self.streams
        hub = streams.ctx.hub
        hub.watch(self.webhook_id, self)
        streams.opened(self)
        try:
            # Its own task: a wake-up then resumes a few frames, not the request's whole middleware stack.
            await asyncio.create_task(self._serve(receive, send))
        finally:
            hub.unwatch(self.webhook_id, self)
            streams.closed(self)
        if not self._abandoned:
            await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def _serve(self, receive: Receive, send: Send) -> None:
        with self._scope:
            disconnect = asyncio.create_task(self._wait_for_disconnect(receive))
            try:
                await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
                # The `id:` sets the browser's Last-Event-ID before any event, so even a reconnect of a
                # stream that started at the live tail and has not received one yet resumes without a gap.
                await self._send(send, b"retry: %d\nid: %d\n\n" % (RETRY_MS, self._cursor))
                self._send_fn = send
                await self._run(send)
            finally:
                self._send_fn = None
                disconnect.cancel()
                if self._inflight is not None:
                    self._inflight.cancel()

    async def _wait_for_disconnect(self, receive: Receive) -> None:
        while (await receive())["type"] != "http.disconnect":
            pass
        # The client went away: there is nothing left to send, so stop wherever the loop is.
        self._abandon()

    async def _run(self, send: Send) -> None:
        """Send the feed after the cursor until the webhook stops, the server closes or the client leaves."""
        ctx = self.streams.ctx
        storage, hub = ctx.storage, ctx.hub
        while True:
            self._woken = False
            if self._inflight is not None:
                await self._inflight  # its done-callback resets the send bookkeeping
                self._inflight = None
            if self._closing:
                return
            if self._changed:
                self._changed = False
                webhook = await storage.get_webhook(self.webhook_id)
                # Stopped or deleted: send what joined the feed before that, then end.
                self._ending = webhook is None or not webhook.is_active
            more = False
            tail = hub.tail_after(self.webhook_id, self._cursor)
            if tail is not None:
                seqs = [item.seq for item in tail]
                frames = [item.frame for item in tail]
            else:
                page = await storage.read_feed(self.webhook_id, self._cursor, PAGE_SIZE)
                seqs = [event.seq for event in page.events]
                frames = [event_frame(event) for event in page.events]
                more = page.has_more
            if self._pruned_through is not None:
                oldest = seqs[0] if seqs else self._pruned_through + 1
                frames.insert(0, pruned_frame(self._cursor, oldest))
                self._pruned_through = None
            if frames:
                await self._send(send, b"".join(frames))
                if seqs:
                    self._cursor = seqs[-1]
                    ctx.metrics.stream_events_sent.inc(len(seqs))
            elif self._ping:
                await self._send(send, PING)
            if more:
                continue
            if self._ending:
                return
            await self._woken_up()

    async def _send(self, send: Send, body: bytes) -> None:
        self._ping = False
        self._send_started = self._last_sent = time.monotonic()
        try:
            await send({"type": "http.response.body", "body": body, "more_body": True})
        finally:
            self._send_started = None
            self._missed = 0
