"""`…/events`: the log's two doors, ingest into an account (SPEC §6) and polling a webhook's feed (§5.3)."""

from __future__ import annotations

import asyncio
import functools
import time

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from app.auth import ACCOUNT_ID, customer, issued_shape, owned_webhook, require_admin
from app.context import context
from app.cursors import check_within_log, feed_pruned
from app.envelopes import build_event
from app.errors import AccountNotFound, BadRequest, EventIdTaken
from app.errors import AccountNotMonitored as AccountNotMonitoredError
from app.requests import json_body, query_int, query_seconds, reject_unknown
from app.responses import JSONResponse, success
from app.routes import BareEndpoint
from app.times import iso_millis
from storage.base import AccountNotMonitored, EventIdConflict, JoinedPage, NewEvent, UnknownAccount

MAX_BATCH = 1000
DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
MAX_WAIT = 60.0


async def ingest(request: Request) -> Response:
    require_admin(request)
    account_id = request.path_params["account_id"]
    if not issued_shape(account_id, ACCOUNT_ID):
        raise AccountNotFound(account_id)
    ctx = context(request)
    # Before the body is read: a refused call costs no upload.
    if ctx.ingest_rate is not None:
        ctx.ingest_rate.take(account_id)
    body = await json_body(request)
    build = functools.partial(
        build_event,
        account_id=account_id,
        catalog=ctx.catalog,
        max_bytes=ctx.settings.max_event_bytes,
        now=iso_millis(),
    )
    events: list[NewEvent]
    if "events" in body:
        reject_unknown(body, ("events",))
        raw_events = body["events"]
        if not isinstance(raw_events, list) or not 1 <= len(raw_events) <= MAX_BATCH:
            raise BadRequest(f"events must be a list of 1 to {MAX_BATCH} events.", field="events")
        events = [build(raw, where=f"events[{index}].") for index, raw in enumerate(raw_events)]
    else:
        events = [build(body)]
    started = time.perf_counter()
    try:
        result = await ctx.storage.append(account_id, events)
    except UnknownAccount:
        raise AccountNotFound(account_id) from None
    except AccountNotMonitored:
        raise AccountNotMonitoredError(
            f"Account {account_id!r} has no active webhook, so it is not monitored and its events are not stored."
        ) from None
    except EventIdConflict as exc:
        index = next(i for i, event in enumerate(events) if event.id == exc.event_id)
        field = f"events[{index}].id" if "events" in body else "id"
        raise EventIdTaken(f"{field} {exc.event_id!r} is already the id of another account's event.") from None
    ctx.metrics.append_seconds.observe(time.perf_counter() - started)
    ctx.metrics.events_appended.inc(len(result.committed))
    return success({"events": [{"id": a.id, "seq": a.seq} for a in result.appended]}, "ingest_events", 201)


async def poll_events(request: Request) -> Response:
    key = await customer(request)
    webhook = await owned_webhook(request, key, cached=True)
    after = query_int(request, "afterSeq", minimum=0)
    limit = min(query_int(request, "limit", minimum=1) or DEFAULT_LIMIT, MAX_LIMIT)
    wait = query_seconds(request, "wait", maximum=MAX_WAIT) or 0.0
    ctx = context(request)
    state = await ctx.log_state(after)
    check_within_log(after, "afterSeq", state)
    cursor = after or 0
    signal = ctx.hub.listen(webhook.id) if wait else None
    try:
        page = await ctx.storage.read_feed_joined(webhook.id, cursor, limit)
        if signal is not None:
            deadline = time.monotonic() + wait
            while not page.count:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or await request.is_disconnected():
                    break
                try:
                    await asyncio.wait_for(signal.wait(), min(remaining, 1.0))
                except TimeoutError:
                    continue
                signal.clear()
                page = await ctx.storage.read_feed_joined(webhook.id, cursor, limit)
    finally:
        if signal is not None:
            ctx.hub.unlisten(webhook.id, signal)
    # The watermark read with the page, never a cached one: a stale one could hide a gap.
    pruned = feed_pruned(webhook, after, page.pruned_through, ctx.settings.retention)
    return JSONResponse(_page_body(page, state.epoch, pruned=pruned))


def _page_body(page: JoinedPage, epoch: str, *, pruned: bool) -> bytes:
    """The polling page, assembled around the stored envelope bytes without re-serializing them."""
    last = page.last_seq
    parts = [
        b'{"success":true,"events":[',
        page.joined,
        b'],"hasMore":',
        b"true" if page.has_more else b"false",
        b',"lastSeq":',
        b"null" if last is None else str(last).encode(),
        b',"epoch":',
        orjson.dumps(epoch),
    ]
    if pruned:
        parts.append(b',"pruned":true')
    parts.append(b"}")
    return b"".join(parts)


routes = [
    Route("/v2/webhooks/{webhook_id}/events", BareEndpoint(poll_events), methods=["GET"]),
    Route("/v2/accounts/{account_id}/events", BareEndpoint(ingest), methods=["POST"]),
]
