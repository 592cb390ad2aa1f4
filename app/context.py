"""What every route needs, built once by the app's lifespan."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Protocol

from starlette.requests import Request

from app.cache import Expiring
from app.catalog import EventCatalog
from app.hub import Hub
from app.limits import Buckets
from app.metrics import Metrics
from app.settings import Settings
from app.times import Clock, SystemClock
from storage.base import ApiKey, LogState, Storage, Webhook, WebhookChange

WebhookListener = Callable[[WebhookChange], Awaitable[None]]

# How stale a cached key or log watermark may be when another process changed it; a webhook changed
# elsewhere leaves the cache as soon as storage tells of it, within milliseconds.
CACHE_SECONDS = 1.0


class Service(Protocol):
    """A background part of the server (monitors, delivery…), started and stopped by the lifespan."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


@dataclass
class Context:
    """The running server's settings, storage, catalog, wake-up hub and services."""

    settings: Settings
    storage: Storage
    catalog: EventCatalog
    hub: Hub
    metrics: Metrics = field(default_factory=Metrics)
    # Meters monitored time; a test clock only when HOOKSTREAM_TEST_CLOCK_FILE is set.
    clock: Clock = field(default_factory=SystemClock)
    services: list[Service] = field(default_factory=list)
    webhook_listeners: list[WebhookListener] = field(default_factory=list)
    api_keys: Expiring[bytes, ApiKey] = field(default_factory=lambda: Expiring(CACHE_SECONDS))
    webhooks: Expiring[str, Webhook] = field(default_factory=lambda: Expiring(CACHE_SECONDS))
    # Per-key and per-account rate limits; None when off.
    key_rate: Buckets | None = None
    ingest_rate: Buckets | None = None
    _log_state: LogState | None = None
    _log_state_read_at: float = 0.0

    def __post_init__(self) -> None:
        if self.settings.rate_limit is not None:
            self.key_rate = Buckets(self.settings.rate_limit, "An API key")
        if self.settings.ingest_rate_limit is not None:
            self.ingest_rate = Buckets(self.settings.ingest_rate_limit, "Ingest into one account")

    async def webhook_changed(self, change: WebhookChange) -> None:
        """Tell every part that cares that a webhook was created, changed, stopped, started or deleted."""
        self.webhooks.discard(change.webhook.id)
        self.hub.wake(change.webhook.id)
        for listener in self.webhook_listeners:
            await listener(change)

    def webhook_changed_elsewhere(self, webhook_id: str | None) -> None:
        """Another process changed this webhook (None: any may have changed): drop what is cached, wake its readers."""
        if webhook_id is None:
            self.webhooks.clear()
            self.hub.wake_all()
        else:
            self.webhooks.discard(webhook_id)
            self.hub.wake(webhook_id)

    async def log_state(self, cursor: int | None = None) -> LogState:
        """The log's epoch, head and retention watermark, read at most once a second.

        The head is the newest this process has seen committed; a cursor past it is checked
        against storage before anyone calls it ahead of the log.
        """
        state = self._log_state
        if state is None or time.monotonic() - self._log_state_read_at > CACHE_SECONDS:
            state = await self._read_log_state()
        if self.hub.head_seq > state.head_seq:
            state = dataclasses.replace(state, head_seq=self.hub.head_seq)
        if cursor is not None and cursor > state.head_seq:
            state = await self._read_log_state()
        return state

    async def _read_log_state(self) -> LogState:
        state = self._log_state = await self.storage.log_state()
        self._log_state_read_at = time.monotonic()
        return state


def context(request: Request) -> Context:
    """The server context of the app serving this request."""
    ctx: Context = request.app.state.context
    return ctx
