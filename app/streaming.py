"""Server-sent event streams of a webhook's feed (SPEC §5.4).

One loop serves catch-up and live alike. A stream keeps a cursor (the seq of
the last event it sent) and registers with the hub *before* its first read.
Then it reads the feed after the cursor — from the hub's in-memory tail when
that reaches back far enough, else from storage a page at a time — until it
is caught up. Registering first means an event committed at any moment is
either in a read or reaches the stream after it (no gap); every read starting
after the cursor means no duplicate.

A caught-up stream then *parks*: the request is handed over (`app._http`), so
the request's task, its scope and uvicorn's request state all go, and the stream
is a small object the hub holds. The hub then writes each commit's ready-made
HTTP chunk to every parked stream's transport — one commit is one loop over the
webhook's streams, with no task woken. Anything that needs
more than that one write (an event the chunk does not cover, the webhook
changing, the client's buffer draining after it fell behind) runs the same loop
again as a short task, which parks the stream once it is caught up. One
heartbeat task per process looks over the open streams a few times per interval
and writes `: ping` to those that have sent nothing for a whole interval.

Served by another server than hookstream's own protocol, nothing can be handed
over: the stream then stays in its request's task and waits for the hub there,
with a small task that waits for the client to go away.

A slow reader costs little memory here: storage is the buffer, and a stream
holds at most one page. A client that stops reading would hold its connection
forever, though: when more than `HOOKSTREAM_STREAM_BACKLOG` events join its
feed while a write to it has been pending for over a second, the stream is
cut, and the client resumes from its cursor. A parked stream whose client's
buffer is full writes nothing more and counts what it skipped; when the
buffer drains it catches up from its cursor.

uvicorn tells an app nothing when SIGTERM arrives; it waits for open responses
to finish. `Streams.start` chains a signal handler in front of the server's
own, so open streams end at once and the process exits promptly.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
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

from app._http import HAND_OVER
from app.context import Context
from app.errors import ShuttingDown, TooManyStreams
from app.hub import Growth, event_frame
from app.tokens import StreamTokens

logger = logging.getLogger("hookstream.streaming")

PAGE_SIZE = 500
RETRY_MS = 3000
# How long one write to a client may stay pending before its backlog counts against it.
STALL_SECONDS = 1.0
# Heartbeat checks per interval: an idle stream's pings are then 1 to 1.25 intervals apart.
HEARTBEAT_CHECKS = 4
PING = b": ping\n\n"
# Written by a parked stream to its transport itself: the HTTP/1.1 chunked framing uvicorn's `send` would add.
PING_CHUNK = b"%x\r\n%b\r\n" % (len(PING), PING)
LAST_CHUNK = b"0\r\n\r\n"
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
        self._open: set[FeedStream] = set()
        # Events parked streams wrote straight from a commit, not yet added to the metrics counter.
        self.sent_directly = 0
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

    def opened(self, stream: FeedStream) -> None:
        self._open.add(stream)
        self.ctx.metrics.open_streams.inc()

    def closed(self, stream: FeedStream) -> None:
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
            for stream in list(self._open):
                stream.ping_if_quiet_since(quiet_since)
            self.count_sent()

    def count_sent(self) -> None:
        """Add what parked streams wrote to the metrics counter (done each heartbeat check, not per write)."""
        if self.sent_directly:
            self.ctx.metrics.stream_events_sent.inc(self.sent_directly)
            self.sent_directly = 0

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
        self.count_sent()
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
        self.stream = FeedStream(streams, webhook_id, key_id, cursor, pruned_through)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.stream.serve(scope, receive, send, self.raw_headers)


class FeedStream:
    """One open stream of a webhook's feed: its cursor, and whatever is writing it (a task, or the hub)."""

    __slots__ = (
        "_abandoned",
        "_cancel",
        "_changed",
        "_closed",
        "_closing",
        "_drained",
        "_ending",
        "_last_sent",
        "_live",
        "_missed",
        "_ping",
        "_pruned_through",
        "_send",
        "_send_started",
        "_task",
        "_transport",
        "_waiter",
        "_woken",
        "cursor",
        "key_id",
        "streams",
        "webhook_id",
    )

    def __init__(self, streams: Streams, webhook_id: str, key_id: str, cursor: int, pruned_through: int | None) -> None:
        self.streams = streams
        self.webhook_id = webhook_id
        self.key_id = key_id
        # The seq of the last event this stream has sent (the hub trims its tail by it).
        self.cursor = cursor
        # Set only when retention deleted events after the cursor: the first message then says so.
        self._pruned_through = pruned_through
        # The wake-up of a running loop: a flag, plus a future only while the loop waits.
        self._woken = False
        self._waiter: asyncio.Future[None] | None = None
        self._ping = False
        self._last_sent = time.monotonic()
        self._changed = False
        self._ending = False
        self._closing = False
        self._abandoned = False
        self._closed = False
        # While a write to the client is pending: since when, and how many events joined the feed meanwhile.
        self._send_started: float | None = None
        self._missed = 0
        # The request's `send`, until the stream is handed over; then the connection's transport.
        self._send: Send | None = None
        self._transport: asyncio.Transport | None = None
        # Handed over and caught up: the hub writes each commit's chunk itself.
        self._live = False
        # The loop, when it runs after the hand-over; and what it waits on while the client's buffer is full.
        self._task: asyncio.Task[None] | None = None
        self._drained: asyncio.Future[None] | None = None
        # Cancels the request's task while the stream still runs in it.
        self._cancel: anyio.CancelScope | None = None

    # What the hub, the heartbeat and the connection tell a stream

    def feed_grew(self, growth: Growth) -> None:
        """Write the new events now if the stream is parked at the live tail; else see to it they get sent."""
        if self._live:
            if self._send_started is None:
                if growth.since <= self.cursor < growth.first:
                    assert self._transport is not None
                    self._transport.write(growth.chunk)
                    self.cursor = growth.last
                    self._last_sent = time.monotonic()
                    self.streams.sent_directly += growth.count
                else:
                    self._run_in_task()
                return
            # The client's buffer is full: nothing more goes in; when it drains, the stream catches up.
        else:
            self._wake()
            if self._send_started is None:
                return
        self._missed += growth.count
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
        """Send `: ping` when the stream has sent nothing after `since` and is not mid-write."""
        if self._last_sent > since or self._send_started is not None:
            return
        if self._live:
            assert self._transport is not None
            self._transport.write(PING_CHUNK)
            self._last_sent = time.monotonic()
        else:
            self._ping = True
            self._wake()

    def server_closing(self) -> None:
        self._closing = True
        if self._send_started is not None:
            # A client that is not reading would hold the shutdown up; drop it.
            self._abandon()
        else:
            self._wake()

    def writing_paused(self) -> None:
        """The client's socket buffer is full (a handed-over stream only): its writes count as pending."""
        if self._send_started is None:
            self._send_started = time.monotonic()

    def writing_resumed(self) -> None:
        behind = self._missed > 0
        self._send_started = None
        self._missed = 0
        drained = self._drained
        if drained is not None and not drained.done():
            drained.set_result(None)
        if behind and self._live:
            self._run_in_task()

    def connection_lost(self) -> None:
        """The client went away (a handed-over stream only): there is nothing left to send."""
        self._abandoned = True
        if self._task is not None:
            self._task.cancel()
        self._close()

    def _wake(self) -> None:
        """Have the loop look again: a parked stream's in a task of its own."""
        if self._live:
            self._run_in_task()
            return
        self._woken = True
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _run_in_task(self) -> None:
        self._live = False
        self._woken = True
        # A context of its own: not the request-id of whichever request's commit woke it.
        self._task = asyncio.get_running_loop().create_task(self._resume(), context=contextvars.Context())

    def _abandon(self) -> None:
        """End the stream without its closing chunk; the connection is then closed."""
        self._abandoned = True
        self._live = False
        if self._cancel is not None:
            self._cancel.cancel()
        elif self._transport is not None:
            self._transport.abort()  # connection_lost follows, and ends the rest

    def _close(self) -> None:
        if not self._closed:
            self._closed = True
            self._live = False
            self.streams.ctx.hub.unwatch(self.webhook_id, self)
            self.streams.closed(self)

    # The loop

    async def serve(self, scope: Scope, receive: Receive, send: Send, headers: list[tuple[bytes, bytes]]) -> None:
        """Open the stream and catch it up in the request's task; then hand it over, or go on here."""
        connection = scope.get("extensions", {}).get(HAND_OVER)
        streams = self.streams
        streams.ctx.hub.watch(self.webhook_id, self)
        streams.opened(self)
        self._send = send
        transport: asyncio.Transport | None = None
        try:
            with anyio.CancelScope() as self._cancel:
                # hookstream's protocol reports a client leaving when the stream is handed over or mid-write;
                # any other server only through `receive`.
                disconnect = None if connection else asyncio.create_task(self._wait_for_disconnect(receive))
                try:
                    await send({"type": "http.response.start", "status": 200, "headers": headers})
                    # The `id:` sets the browser's Last-Event-ID before any event, so even a reconnect of a
                    # stream that started at the live tail and has not received one yet resumes without a gap.
                    await self._write(b"retry: %d\nid: %d\n\n" % (RETRY_MS, self.cursor))
                    if await self._run(park=connection is not None):
                        transport = connection.hand_over(self)
                        if transport is None:
                            self._abandoned = True  # the client is already gone
                finally:
                    if disconnect is not None:
                        disconnect.cancel()
        finally:
            self._cancel = None
            if transport is None:
                self._close()
        if transport is not None:
            # Parked: from here the hub and the connection drive the stream, and the request is over.
            self._send = None
            self._transport = transport
            self._live = True
        elif not self._abandoned:
            await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def _wait_for_disconnect(self, receive: Receive) -> None:
        while (await receive())["type"] != "http.disconnect":
            pass
        # The client went away: there is nothing left to send, so stop wherever the loop is.
        self._abandon()

    async def _resume(self) -> None:
        """Catch a handed-over stream up; park it again, or end it."""
        try:
            parked = await self._run(park=True)
        except asyncio.CancelledError:
            return  # abandoned: whoever cancelled ends the rest
        except Exception:
            logger.exception("a stream of webhook %s failed; its client resumes from its cursor", self.webhook_id)
            self._task = None
            self._abandon()
            return
        self._task = None
        if parked:
            self._live = True
            return
        assert self._transport is not None
        if not self._abandoned:
            self._transport.write(LAST_CHUNK)
            self._transport.close()
        self._close()

    async def _run(self, *, park: bool) -> bool:
        """Send the feed after the cursor: True once caught up (with `park`), False when the stream is to end."""
        ctx = self.streams.ctx
        storage, hub = ctx.storage, ctx.hub
        while True:
            self._woken = False
            if self._closing or self._abandoned:
                return False
            if self._changed:
                self._changed = False
                webhook = await storage.get_webhook(self.webhook_id)
                # Stopped or deleted: send what joined the feed before that, then end.
                self._ending = webhook is None or not webhook.is_active
            more = False
            tail = hub.tail_after(self.webhook_id, self.cursor)
            if tail is not None:
                seqs = [item.seq for item in tail]
                frames = [item.frame for item in tail]
            else:
                page = await storage.read_feed(self.webhook_id, self.cursor, PAGE_SIZE)
                seqs = [event.seq for event in page.events]
                frames = [event_frame(event) for event in page.events]
                more = page.has_more
            if self._pruned_through is not None:
                oldest = seqs[0] if seqs else self._pruned_through + 1
                frames.insert(0, pruned_frame(self.cursor, oldest))
                self._pruned_through = None
            if frames:
                await self._write(b"".join(frames))
                if seqs:
                    self.cursor = seqs[-1]
                    ctx.metrics.stream_events_sent.inc(len(seqs))
            elif self._ping:
                await self._write(PING)
            if more:
                continue
            if self._ending:
                return False
            if park and not self._woken:
                return True
            await self._woken_up()

    async def _write(self, body: bytes) -> None:
        self._ping = False
        self._last_sent = time.monotonic()
        send = self._send
        if send is not None:
            self._send_started = self._last_sent
            try:
                await send({"type": "http.response.body", "body": body, "more_body": True})
            finally:
                self._send_started = None
                self._missed = 0
            return
        # As uvicorn's `send` does: into a full buffer nothing more goes until it drains (`writing_resumed`)
        # or the connection goes (the task is cancelled).
        while self._send_started is not None:
            self._drained = asyncio.get_running_loop().create_future()
            try:
                await self._drained
            finally:
                self._drained = None
        assert self._transport is not None
        self._transport.write(b"%x\r\n%b\r\n" % (len(body), body))

    async def _woken_up(self) -> None:
        """Return once `_wake` has been called since the loop last looked."""
        if not self._woken:
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
