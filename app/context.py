"""What every route needs, built once by the app's lifespan."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Protocol

from starlette.requests import Request

from app.catalog import EventCatalog
from app.clock import Clock, SystemClock
from app.hub import Hub
from app.metrics import Metrics
from app.settings import Settings
from storage.base import Storage, WebhookChange

WebhookListener = Callable[[WebhookChange], Awaitable[None]]


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

    async def webhook_changed(self, change: WebhookChange) -> None:
        """Tell every part that cares that a webhook was created, changed, stopped, started or deleted."""
        self.hub.wake(change.webhook.id)
        for listener in self.webhook_listeners:
            await listener(change)


def context(request: Request) -> Context:
    """The server context of the app serving this request."""
    ctx: Context = request.app.state.context
    return ctx
