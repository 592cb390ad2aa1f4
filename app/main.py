"""The app factory: routes, error handling, and the lifespan that owns storage and background tasks."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Match, Route
from starlette.types import ASGIApp

from app import openapi
from app.catalog import EventCatalog, filter_matches
from app.context import Context
from app.delivery import DeliveryEngine
from app.errors import HookstreamError, HttpError, MethodNotAllowed, RouteNotFound, StorageUnavailable
from app.hub import Hub
from app.logs import RequestIds
from app.monitors import Monitors
from app.responses import error_response
from app.routes import accounts, admin, attempts, console, event_types, events, health, stream, usage, webhooks
from app.settings import Settings
from app.streaming import Streams
from app.times import clock_from, micros_ago
from storage import create_storage
from storage.base import StorageUnavailable as StorageDown

logger = logging.getLogger("hookstream")


def _action(request: Request) -> str:
    endpoint = request.scope.get("endpoint")
    return getattr(endpoint, "__name__", "error")


async def _hookstream_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HookstreamError)
    return error_response(exc, _action(request))


def _allowed_methods(request: Request) -> str:
    """Every method a route has for this path; Starlette's own `Allow` names only the first matching route's."""
    methods: set[str] = set()
    for route in request.app.router.routes:
        if isinstance(route, Route) and route.methods and route.matches(request.scope)[0] is not Match.NONE:
            methods |= route.methods
    return ", ".join(sorted(methods))


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    error: HookstreamError
    if exc.status_code == 404:
        error = RouteNotFound(f"No route {request.method} {request.url.path}.")
    elif exc.status_code == 405:
        error = MethodNotAllowed(f"{request.method} is not allowed on {request.url.path}.")
    else:
        error = HttpError(str(exc.detail), exc.status_code)
    response = error_response(error, _action(request))
    # Keep Starlette's headers, such as the `Allow` list a 405 must carry.
    response.headers.update(exc.headers or {})
    if exc.status_code == 405:
        response.headers["allow"] = _allowed_methods(request)
    return response


async def _client_gone(request: Request, exc: Exception) -> Response:
    # A client that leaves mid-body (a closed tab, its own timeout) is normal: one quiet line, and no
    # answer, since there is no one to send it to.
    logger.info("client went away during %s %s", request.method, request.url.path)
    return Response(status_code=400)


async def _storage_down(request: Request, exc: Exception) -> Response:
    # Every route's storage call may meet it, so it is answered here once: 503, nothing stored.
    logger.warning("%s %s: %s", request.method, request.url.path, exc)
    return error_response(StorageUnavailable(), _action(request))


async def _unexpected_error(request: Request, exc: Exception) -> Response:
    logger.exception("unhandled error on %s %s", request.method, request.url.path)
    return error_response(HookstreamError("Something went wrong on our side; try again."), _action(request))


async def prune_forever(ctx: Context) -> None:
    """Delete events older than the retention window, in bounded batches that leave room for appends."""
    settings = ctx.settings
    while True:
        try:
            cutoff = micros_ago(settings.retention)
            while await ctx.storage.prune(cutoff, settings.retention_batch) >= settings.retention_batch:
                await asyncio.sleep(0.01)
        except Exception:
            logger.exception("retention pass failed; retrying in %ss", settings.retention_interval)
        await asyncio.sleep(settings.retention_interval)


class _Hookstream(Starlette):
    """Starlette with request ids outermost, so even a 500 from its error middleware carries one."""

    def build_middleware_stack(self) -> ASGIApp:
        return RequestIds(super().build_middleware_stack())


def create_app(settings: Settings | None = None) -> Starlette:
    """A hookstream ASGI app; settings default to the environment."""
    settings = settings or Settings.from_env()
    catalog = EventCatalog.load(settings.event_types)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        storage = create_storage(
            settings.database_url,
            matcher=filter_matches,
            sqlite_synchronous=settings.sqlite_synchronous,
            event_cache_bytes=settings.event_cache_bytes,
        )
        await storage.open()
        hub = Hub()
        hub.head_seq = (await storage.log_state()).head_seq
        storage.subscribe(hub.publish)
        ctx = Context(
            settings=settings, storage=storage, catalog=catalog, hub=hub, clock=clock_from(settings.test_clock_file)
        )
        storage.watch_webhooks(ctx.webhook_changed_elsewhere)
        monitors = Monitors(ctx)
        ctx.services.append(monitors)
        ctx.webhook_listeners.append(monitors.webhook_changed)
        ctx.services.append(DeliveryEngine(ctx, monitors))
        # Last, so it stops first: open streams end before the parts they read from.
        app.state.streams = Streams(ctx)
        ctx.services.append(app.state.streams)
        app.state.context = ctx
        retention = asyncio.create_task(prune_forever(ctx), name="hookstream-retention")
        for service in ctx.services:
            await service.start()
        try:
            yield
        finally:
            for service in reversed(ctx.services):
                await service.stop()
            retention.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await retention
            await storage.close()

    middleware = []
    if settings.cors_origins:
        middleware.append(
            Middleware(
                CORSMiddleware,
                allow_origins=list(settings.cors_origins),
                allow_methods=["GET", "POST", "PATCH", "PUT", "DELETE"],
                allow_headers=["x-api-key", "content-type", "last-event-id", "authorization"],
                expose_headers=["Hookstream-Epoch", "X-Request-Id"],
            )
        )
    return _Hookstream(
        # The router tries routes in order: the per-request hot paths (polling, ingest, streams) go first.
        routes=[
            *events.routes,
            *stream.routes,
            *webhooks.routes,
            *accounts.routes,
            *usage.routes,
            *attempts.routes,
            *event_types.routes,
            *admin.routes,
            *health.routes,
            *console.routes,
            *openapi.routes,
        ],
        middleware=middleware,
        exception_handlers={
            HookstreamError: _hookstream_error,
            HTTPException: _http_error,
            ClientDisconnect: _client_gone,
            StorageDown: _storage_down,
            Exception: _unexpected_error,
        },
        lifespan=lifespan,
    )
