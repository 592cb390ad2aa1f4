"""Custom-mode delivery: POST every feed event of a webhook to its URL, signed (SPEC §8).

A custom webhook's deliveries are exactly its feed. Each active custom webhook
has one worker task here, and all of its state lives in storage, so a restart
or a kill -9 resumes where it stopped:

- `cursor_seq`: every feed event up to it has had its first attempt recorded.
  The cursor moves in the same transaction that logs that attempt, so an event
  whose attempt was cut short by a crash is sent again: at-least-once.
- `deliveries`: events whose first attempt failed, each with its attempt count
  and when the next retry is due.

Ordering, per webhook (`ordering`):

- "fast" (default): first attempts go out one at a time in seq order, so a healthy
  endpoint receives a webhook's events in order. A failing event does not hold back
  the ones after it: it leaves the line and is retried on its own, interleaved with
  newer events (retries are due in seq order among themselves). Head-of-line
  blocking would stall a webhook for up to a day behind one poison event; receivers
  order by `seq` and dedupe by `id` instead (SPEC §8), which this makes safe.
- "strict": while an event is pending a retry, nothing after it is sent; the feed
  moves on once it is delivered or has exhausted its schedule. One event at a time,
  in seq order, for receivers that cannot reorder.

When the schedule is exhausted the event is logged `failed` and stays in the feed;
`recover` sends the feed again from any seq or time. Retry times (jitter, bound,
Retry-After) are app/retries.py's.

Receivers steer (SPEC §8.1): a 429/503 with Retry-After delays that event's next
attempt; a 410 disables the webhook at once, its event left pending so that `start`
delivers it first. `max_rate` spaces a webhook's sends; waiting for it is neither a
failure nor a drop. One process delivers for an account at a time (the monitor
lease: app/monitors.py), and each webhook has one worker there that sends one
request at a time, so spacing the sends in that worker holds the rate cluster-wide.

Each attempt runs the SSRF guard again and connects to the address it just
vetted (Host header and TLS SNI keep the URL's name), so a name that resolves to
a public address at check time cannot send the request to a private one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
import weakref
from dataclasses import dataclass

import httpx

from app.addresses import Target, UnsafeUrl, vetted_target
from app.context import Context
from app.envelopes import system_event, test_event
from app.monitors import Monitors
from app.retries import RETRY_AFTER_STATUSES, next_attempt, retry_after_seconds
from app.signing import signed_request
from app.times import iso_millis, wall_micros
from storage.base import DeliveryAttempt, StoredEvent, Webhook, WebhookChange

logger = logging.getLogger("hookstream.delivery")

BATCH = 100
# How often a worker with retries pending looks at the clock (the clock may be a test clock that jumps).
RETRY_POLL_SECONDS = 1.0
# A worker checks its breaker at most this often while busy, and always when it goes idle.
BREAKER_CHECK_SECONDS = 1.0
# Later than any retry is due: `due_deliveries` with it lists pending retries whenever they are due.
NEVER = 2**62
# Only the status matters; a receiver's body is read up to this much and dropped.
MAX_RESPONSE_BYTES = 64 * 1024


@dataclass(frozen=True, slots=True)
class AttemptResult:
    """What one POST came to: a 2xx is `ok`; `error` says what went wrong otherwise."""

    status_code: int | None
    latency_ms: float
    error: str | None
    # Seconds a 429/503's Retry-After asked for, uncapped; None when it named none.
    retry_after: float | None = None

    @property
    def ok(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300

    @property
    def gone(self) -> bool:
        return self.status_code == 410


class DeliveryEngine:
    """Runs one delivery worker per active custom webhook."""

    def __init__(self, ctx: Context, monitors: Monitors) -> None:
        self._ctx = ctx
        # Deliveries of an account run where its monitor runs: one process cluster-wide, never two.
        self._monitors = monitors
        self._settings = ctx.settings
        self._storage = ctx.storage
        # The server's clock: a test clock (HOOKSTREAM_TEST_CLOCK_FILE) lets tests cross 72 hours at once.
        self._clock = ctx.clock
        self._client: httpx.AsyncClient | None = None
        self._workers: dict[str, asyncio.Task[None]] = {}
        self._sweeper: asyncio.Task[None] | None = None
        self._overall = asyncio.Semaphore(ctx.settings.delivery_concurrency)
        # One semaphore per endpoint (scheme, host, port), dropped once nobody holds it.
        self._endpoints: weakref.WeakValueDictionary[tuple[str, str, int], asyncio.Semaphore] = (
            weakref.WeakValueDictionary()
        )
        # Per webhook with a max_rate: the monotonic time its next send may start.
        self._next_send: dict[str, float] = {}
        self._rng = random.Random()

    def now(self) -> int:
        """The delivery clock, in µs: attempt times, retry times and the breaker use it."""
        return self._clock.now_micros()

    async def start(self) -> None:
        settings = self._settings
        self._client = httpx.AsyncClient(
            timeout=httpx.Timeout(settings.delivery_timeout),
            follow_redirects=False,
            limits=httpx.Limits(max_connections=settings.delivery_concurrency, max_keepalive_connections=20),
            # Proxies from the environment would bypass the address check.
            trust_env=False,
        )
        self._ctx.webhook_listeners.append(self.webhook_changed)
        await self._sweep()
        self._sweeper = asyncio.create_task(self._sweep_forever(), name="hookstream-delivery-sweep")

    async def _sweep(self) -> None:
        """Start workers for the custom webhooks of every account this process monitors."""
        for webhook in await self._storage.active_webhooks():
            if webhook.mode == "custom" and self._monitors.runs(webhook.account_id):
                self._ensure_worker(webhook.id)

    async def _sweep_forever(self) -> None:
        # Webhooks created on another process, or accounts taken over from a dead one, are found here.
        while True:
            await asyncio.sleep(max(self._settings.checkpoint_interval, 1.0))
            try:
                await self._sweep()
            except Exception:
                logger.exception("delivery sweep failed; retrying next interval")

    async def stop(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
            self._sweeper = None
        workers = list(self._workers.values())
        self._workers.clear()
        for worker in workers:
            worker.cancel()
        for worker in workers:
            with contextlib.suppress(asyncio.CancelledError):
                await worker
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def webhook_changed(self, change: WebhookChange) -> None:
        """Start a worker for an active custom webhook; end it when the webhook stops or goes away."""
        webhook = await self._storage.get_webhook(change.webhook.id)
        if webhook is not None and webhook.is_active and webhook.mode == "custom":
            self._ensure_worker(webhook.id)
            return
        worker = self._workers.pop(change.webhook.id, None)
        # A worker that stops its own webhook (breaker) ends by itself.
        if worker is not None and worker is not asyncio.current_task():
            worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await worker

    def _ensure_worker(self, webhook_id: str) -> None:
        worker = self._workers.get(webhook_id)
        if worker is None or worker.done():
            task = asyncio.create_task(self._work(webhook_id), name=f"hookstream-delivery-{webhook_id}")
            self._workers[webhook_id] = task
            task.add_done_callback(lambda done: self._forget(webhook_id, done))

    def _forget(self, webhook_id: str, task: asyncio.Task[None]) -> None:
        if self._workers.get(webhook_id) is task:
            del self._workers[webhook_id]
            self._next_send.pop(webhook_id, None)

    # The worker

    async def _work(self, webhook_id: str) -> None:
        hub = self._ctx.hub
        signal = hub.listen(webhook_id)
        try:
            while True:
                signal.clear()
                try:
                    webhook = await self._storage.get_webhook(webhook_id)
                    if webhook is None or not webhook.is_active or webhook.url is None:
                        return
                    if not self._monitors.runs(webhook.account_id):
                        # Another process delivers for this account; look again in case it dies.
                        with contextlib.suppress(TimeoutError):
                            await asyncio.wait_for(signal.wait(), RETRY_POLL_SECONDS)
                        continue
                    if await self._round(webhook_id):
                        continue
                    await self._check_breaker(webhook_id)
                    due = await self._next_due(webhook_id)
                except Exception:
                    logger.exception("delivery worker for webhook %s failed; retrying in 1s", webhook_id)
                    await asyncio.sleep(1.0)
                    continue
                timeout = None
                if due is not None:
                    timeout = min(RETRY_POLL_SECONDS, max(0.0, (due - self.now()) / 1_000_000))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(signal.wait(), timeout)
        finally:
            hub.unlisten(webhook_id, signal)

    async def _round(self, webhook_id: str) -> bool:
        """Send due retries, then the feed after the cursor; True when there was work (so look again)."""
        webhook = await self._current(webhook_id)
        if webhook is None:
            return False
        if webhook.ordering == "strict":
            return await self._strict_round(webhook_id)
        breaker_checked = time.monotonic()
        due = await self._storage.due_deliveries(webhook_id, self.now(), BATCH)
        for pending in due:
            webhook = await self._current(webhook_id)
            if webhook is None:
                return False
            await self._attempt(webhook, pending.event, pending.attempts + 1, None, pending.first_attempt_at)
            breaker_checked = await self._check_breaker_every(webhook_id, breaker_checked)
        state = await self._storage.delivery_state(webhook_id)
        page = await self._storage.read_feed(webhook_id, state.cursor_seq, BATCH)
        cursor = state.cursor_seq
        for event in page.events:
            webhook = await self._current(webhook_id)
            if webhook is None:
                return False
            if (await self._attempt(webhook, event, 1, cursor, None)) is None:
                # A recover moved the cursor meanwhile: start again from where it put it.
                return True
            cursor = event.seq
            breaker_checked = await self._check_breaker_every(webhook_id, breaker_checked)
        return bool(due or page.events)

    async def _strict_round(self, webhook_id: str) -> bool:
        """One event at a time in seq order: a pending retry holds the feed until it settles."""
        breaker_checked = time.monotonic()
        # The lowest pending seq, due or not: retries left by fast mode go in seq order too.
        head = await self._storage.due_deliveries(webhook_id, NEVER, 1)
        if head:
            pending = head[0]
            webhook = await self._current(webhook_id)
            if pending.next_attempt_at > self.now() or webhook is None:
                return False
            await self._attempt(webhook, pending.event, pending.attempts + 1, None, pending.first_attempt_at)
            return True
        state = await self._storage.delivery_state(webhook_id)
        page = await self._storage.read_feed(webhook_id, state.cursor_seq, BATCH)
        cursor = state.cursor_seq
        for event in page.events:
            webhook = await self._current(webhook_id)
            if webhook is None or webhook.ordering != "strict":
                return webhook is not None
            outcome = await self._attempt(webhook, event, 1, cursor, None)
            if outcome != "delivered":
                # Retrying (it now holds the line), failed on its first try, or the cursor moved: look again.
                return True
            cursor = event.seq
            breaker_checked = await self._check_breaker_every(webhook_id, breaker_checked)
        return bool(page.events)

    async def _next_due(self, webhook_id: str) -> int | None:
        """When the worker has work again: the earliest retry, or in strict order the lowest seq's retry."""
        webhook = await self._storage.get_webhook(webhook_id)
        if webhook is not None and webhook.ordering == "strict":
            head = await self._storage.due_deliveries(webhook_id, NEVER, 1)
            return head[0].next_attempt_at if head else None
        return await self._storage.next_delivery_due(webhook_id)

    async def _current(self, webhook_id: str) -> Webhook | None:
        """The webhook as it is now, so a rotated secret or a new URL applies to the very next attempt."""
        webhook = await self._storage.get_webhook(webhook_id)
        if webhook is None or not webhook.is_active or webhook.url is None:
            return None
        return webhook

    async def _attempt(
        self, webhook: Webhook, event: StoredEvent, attempt: int, from_cursor: int | None, first_attempt_at: int | None
    ) -> str | None:
        """Send one attempt and record it; its outcome, or None when a recover moved the cursor meanwhile."""
        await self._throttle(webhook)
        result = await self.send(webhook, event.id, event.body, event.seq)
        settings = self._settings
        now = self.now()
        retry_after = result.retry_after if result.status_code in RETRY_AFTER_STATUSES else None
        planned = next_attempt(
            settings.retry_schedule,
            attempt,
            now,
            first_attempt_at,
            retry_after=retry_after,
            retry_after_max=settings.retry_after_max,
            rng=self._rng,
        )
        next_attempt_at = None
        if result.ok:
            outcome = "delivered"
        elif result.gone:
            # The receiver said stop: the event waits, due at once, for the webhook to be started again.
            outcome, next_attempt_at = "retrying", now
        elif planned is not None:
            outcome, next_attempt_at = "retrying", planned.at
        else:
            outcome = "failed"
        record = DeliveryAttempt(
            webhook_id=webhook.id,
            seq=event.seq,
            event_id=event.id,
            attempt=attempt,
            outcome=outcome,
            status_code=result.status_code,
            latency_ms=result.latency_ms,
            error=result.error,
            created_at=now,
            next_attempt_at=next_attempt_at,
            retry_after=planned.retry_after if planned is not None and not result.gone else None,
        )
        self._ctx.metrics.deliveries.labels(outcome=outcome).inc()
        self._ctx.metrics.delivery_seconds.observe(result.latency_ms / 1000)
        recorded = await self._storage.record_attempt(record, from_cursor=from_cursor, next_attempt_at=next_attempt_at)
        if result.gone:
            await self._disable(webhook, f"the receiver answered 410 Gone to {event.id}")
        return outcome if recorded else None

    async def _throttle(self, webhook: Webhook) -> None:
        """Wait until the webhook's max_rate lets its next send start (sends are spaced 1/max_rate apart)."""
        if webhook.max_rate is None:
            self._next_send.pop(webhook.id, None)
            return
        now = time.monotonic()
        start = max(now, self._next_send.get(webhook.id, now))
        self._next_send[webhook.id] = start + 1 / webhook.max_rate
        if start > now:
            await asyncio.sleep(start - now)

    async def _disable(self, webhook: Webhook, reason: str) -> None:
        """Stop the webhook at the receiver's word: status `disabled`, and `webhook.disabled` in the account log."""
        change = await self._storage.update_webhook(webhook.id, status="disabled", is_active=False)
        if change is None:
            return
        logger.warning("webhook %s disabled: %s", webhook.id, reason)
        event = system_event("webhook.disabled", webhook.account_id, {"webhook_id": webhook.id, "reason": reason})
        await self._storage.append(webhook.account_id, [event], require_monitored=False)
        await self._ctx.webhook_changed(change)

    # Sending

    async def send(self, webhook: Webhook, message_id: str, envelope: bytes, seq: int) -> AttemptResult:
        """POST one envelope to the webhook's URL, signed, after the SSRF guard; a receiver's fault never raises."""
        assert webhook.url is not None and webhook.secret is not None
        settings = self._settings
        started = time.monotonic()
        try:
            target = await vetted_target(
                webhook.url, allow_http=settings.allow_http, allow_private=settings.allow_private_urls
            )
        except UnsafeUrl as exc:
            return AttemptResult(None, _elapsed_ms(started), f"refused: {exc}")
        body, headers = signed_request(
            signing_secrets(webhook, wall_micros()),
            message_id,
            envelope,
            int(time.time()),
            compressed=webhook.compressed_delivery,
        )
        headers["webhook-seq"] = str(seq)
        endpoint = (target.parts.scheme, target.host, target.port)
        semaphore = self._endpoints.get(endpoint)
        if semaphore is None:
            semaphore = asyncio.Semaphore(settings.delivery_concurrency_per_endpoint)
            self._endpoints[endpoint] = semaphore
        async with self._overall, semaphore:
            started = time.monotonic()
            try:
                async with asyncio.timeout(settings.delivery_timeout):
                    status, retry_after = await self._post(target, body, headers)
            except (TimeoutError, httpx.TimeoutException):
                return AttemptResult(None, _elapsed_ms(started), f"timed out after {settings.delivery_timeout:g}s")
            except httpx.HTTPError as exc:
                return AttemptResult(None, _elapsed_ms(started), f"{type(exc).__name__}: {exc}".rstrip(": "))
        latency = _elapsed_ms(started)
        if 200 <= status < 300:
            return AttemptResult(status, latency, None)
        if 300 <= status < 400:
            return AttemptResult(status, latency, f"HTTP {status}: redirects are not followed")
        if status == 410:
            return AttemptResult(status, latency, "HTTP 410: the receiver asked to stop; webhook disabled")
        return AttemptResult(status, latency, f"HTTP {status}", retry_after_seconds(retry_after, time.time()))

    async def _post(self, target: Target, body: bytes, headers: dict[str, str]) -> tuple[int, str | None]:
        assert self._client is not None, "the delivery engine is not started"
        address = target.addresses[0]
        literal = f"[{address}]" if address.version == 6 else str(address)
        url = target.parts._replace(netloc=f"{literal}:{target.port}").geturl()
        default_port = 443 if target.parts.scheme == "https" else 80
        host = f"[{target.host}]" if ":" in target.host else target.host
        headers = {**headers, "host": host if target.port == default_port else f"{host}:{target.port}"}
        extensions = {"sni_hostname": target.host} if target.parts.scheme == "https" else {}
        request = self._client.build_request("POST", url, content=body, headers=headers, extensions=extensions)
        response = await self._client.send(request, stream=True)
        try:
            read = 0
            async for chunk in response.aiter_raw():
                read += len(chunk)
                if read > MAX_RESPONSE_BYTES:
                    break
        finally:
            await response.aclose()
        return response.status_code, response.headers.get("retry-after")

    async def deliver_test(self, webhook: Webhook) -> AttemptResult:
        """Send a `webhook.test` event at once, outside the feed (seq 0), and log the attempt."""
        event = test_event(webhook.id, webhook.account_id)
        stored = StoredEvent(0, event.id, webhook.account_id, event.type, event.envelope(0))
        result = await self.send(webhook, stored.id, stored.body, 0)
        record = DeliveryAttempt(
            webhook_id=webhook.id,
            seq=0,
            event_id=stored.id,
            attempt=1,
            outcome="delivered" if result.ok else "failed",
            status_code=result.status_code,
            latency_ms=result.latency_ms,
            error=result.error,
            created_at=self.now(),
        )
        await self._storage.record_attempt(record, from_cursor=None)
        if result.gone:
            # A 410 is the receiver's word whichever event it answers (SPEC §8.1); the answer already says so.
            await self._disable(webhook, "the receiver answered 410 Gone to the test event")
        return result

    # Circuit breaker

    async def _check_breaker_every(self, webhook_id: str, last: float) -> float:
        if time.monotonic() - last < BREAKER_CHECK_SECONDS:
            return last
        await self._check_breaker(webhook_id)
        return time.monotonic()

    async def _check_breaker(self, webhook_id: str) -> None:
        """Move the webhook between healthy, failing and failed by its recent failure ratio (SPEC §8)."""
        settings = self._settings
        webhook = await self._storage.get_webhook(webhook_id)
        if webhook is None or not webhook.is_active:
            return
        now = self.now()
        state = await self._storage.delivery_state(webhook_id)
        since = max(now - int(settings.breaker_window * 1_000_000), state.breaker_from or 0)
        total, failed = await self._storage.attempt_counts(webhook_id, since)
        ratio = failed / total if total else 0.0
        failing = total > 0 and ratio >= settings.breaker_failure_ratio
        if webhook.status == "healthy":
            if failing and total >= settings.breaker_min_attempts:
                await self._storage.set_failing_since(webhook_id, now)
                await self._transition(webhook, "failing", failure_rate=round(ratio, 4))
            return
        if webhook.status != "failing":
            return
        if total and not failing:
            await self._storage.set_failing_since(webhook_id, None)
            await self._transition(webhook, "healthy")
            return
        tripped = state.failing_since
        if tripped is None:
            await self._storage.set_failing_since(webhook_id, now)
        elif failing and now - tripped >= settings.breaker_failed_after * 1_000_000:
            await self._transition(webhook, "failed", failing_since=iso_millis(tripped))

    async def restart_breaker(self, webhook_id: str) -> None:
        """`start` revived a failed or disabled webhook: its breaker counts attempts from now on."""
        await self._storage.restart_breaker(webhook_id, self.now())

    async def _transition(self, webhook: Webhook, status: str, **details: object) -> None:
        ctx = self._ctx
        stopping = status == "failed"
        change = await self._storage.update_webhook(webhook.id, status=status, is_active=False if stopping else None)
        if change is None:
            return
        logger.warning("webhook %s is now %s", webhook.id, status)
        if status != "healthy":
            data: dict[str, object] = {"webhook_id": webhook.id, "url": webhook.url, "status": status}
            if stopping:
                data["is_active"] = False
            else:
                data["window_seconds"] = self._settings.breaker_window
            data.update(details)
            event = system_event(f"webhook.{status}", webhook.account_id, data)
            await self._storage.append(webhook.account_id, [event], require_monitored=False)
        await ctx.webhook_changed(change)


def delivery_engine(ctx: Context) -> DeliveryEngine:
    """The running server's delivery engine."""
    for service in ctx.services:
        if isinstance(service, DeliveryEngine):
            return service
    raise RuntimeError("the delivery engine is not registered")


def signing_secrets(webhook: Webhook, now_wall: int) -> list[str]:
    """The secrets a delivery signs with now: the current one, then the previous one until its overlap ends."""
    assert webhook.secret is not None
    expires = webhook.previous_expires_at
    if webhook.previous_secret is not None and expires is not None and now_wall < expires:
        return [webhook.secret, webhook.previous_secret]
    return [webhook.secret]


def _elapsed_ms(started: float) -> float:
    return round((time.monotonic() - started) * 1000, 3)
