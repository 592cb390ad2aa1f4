"""`…/events`: the log's two doors, ingest into an account (SPEC §6) and polling a webhook's feed (§5.3).

A polling page has two representations, chosen by the Accept header: the SPEC's JSON page, and
JSON Lines (`application/x-ndjson` or `application/jsonl`), one stored envelope per line with the
page's own fields in `Hookstream-*` headers, so a client archiving the feed can write the body as
it comes. Both are the stored envelope bytes joined by the database, by a comma or by a newline:
no stored envelope holds a raw newline (orjson escapes every control character in a string).
"""

from __future__ import annotations

import asyncio
import functools
import re
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
from app.responses import JSON_TYPE, JSONResponse, success
from app.routes import BareEndpoint
from app.times import iso_millis
from storage.base import AccountNotMonitored, EventIdConflict, JoinedPage, NewEvent, UnknownAccount

MAX_BATCH = 1000
DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
MAX_WAIT = 60.0
# The JSON Lines media types a poller may ask for; the answer names the one it asked for.
JSON_LINES_TYPES = ("application/x-ndjson", "application/jsonl")
# In the server's order of preference: at equal weight JSON wins, the page every client before JSON Lines expects.
_PAGE_TYPES = (JSON_TYPE, *JSON_LINES_TYPES)
_PLAIN_ACCEPTS = frozenset(("*/*", JSON_TYPE, "application/*"))
_QVALUE = re.compile(r"0(\.[0-9]{0,3})?|1(\.0{0,3})?")
# Each representation of a page depends on Accept: a cache in between must key on it.
_VARY = (b"vary", b"Accept")


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
    accept = _accept(request)
    media = JSON_TYPE if accept is None or accept in _PLAIN_ACCEPTS else page_type(accept)
    separator = b"," if media == JSON_TYPE else b"\n"
    ctx = context(request)
    state = await ctx.log_state(after)
    check_within_log(after, "afterSeq", state)
    cursor = after or 0
    signal = ctx.hub.listen(webhook.id) if wait else None
    try:
        page = await ctx.storage.read_feed_joined(webhook.id, cursor, limit, separator)
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
                page = await ctx.storage.read_feed_joined(webhook.id, cursor, limit, separator)
    finally:
        if signal is not None:
            ctx.hub.unlisten(webhook.id, signal)
    # The watermark read with the page, never a cached one: a stale one could hide a gap.
    pruned = feed_pruned(webhook, after, page.pruned_through, ctx.settings.retention)
    response: Response
    if media == JSON_TYPE:
        response = JSONResponse(_page_body(page, state.epoch, pruned=pruned))
    else:
        response = _lines_response(page, state.epoch, media, pruned=pruned)
    response.raw_headers.append(_VARY)
    return response


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


def _lines_response(page: JoinedPage, epoch: str, media: str, *, pruned: bool) -> Response:
    """The polling page as JSON Lines: the body only envelopes, one a line; the page's own fields in headers."""
    response = Response(page.joined + b"\n" if page.count else b"", media_type=media)
    headers = response.raw_headers
    # The count spares a client that writes the body to a file a scan of it for newlines.
    headers.append((b"hookstream-count", str(page.count).encode()))
    headers.append((b"hookstream-has-more", b"true" if page.has_more else b"false"))
    if page.last_seq is not None:
        headers.append((b"hookstream-last-seq", str(page.last_seq).encode()))
    headers.append((b"hookstream-epoch", epoch.encode()))
    if pruned:
        headers.append((b"hookstream-pruned", b"true"))
    return response


def _accept(request: Request) -> str | None:
    """The request's Accept header; several are one list (RFC 9110 §5.3)."""
    values = [value for name, value in request.scope["headers"] if name == b"accept"]
    if not values:
        return None
    return (values[0] if len(values) == 1 else b",".join(values)).decode("latin-1")


def page_type(accept: str) -> str:
    """The representation of a polling page that an Accept header prefers: JSON unless a JSON Lines type outweighs it.

    Each type takes the weight of the most specific media range matching it (RFC 9110 §12.5.1). An
    Accept that admits none of them is disregarded, as that section allows, and gets JSON: polling
    answered JSON to every Accept before JSON Lines existed, and errors are JSON whatever Accept says.
    """
    if len(accept) > 512:  # past any real client's: not worth a cache entry
        return _page_type(accept)
    return _cached_page_type(accept)


def _page_type(accept: str) -> str:
    ranges: list[tuple[str, float]] = []
    for part in accept.split(","):
        media, _, params = part.partition(";")
        weight = 1.0
        for param in params.split(";"):
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                value = value.strip()
                weight = float(value) if _QVALUE.fullmatch(value) else -1.0  # a malformed range is no range
        if weight >= 0:
            ranges.append((media.strip().lower(), weight))
    best, best_weight = JSON_TYPE, 0.0
    for candidate in _PAGE_TYPES:
        weight = _weight(candidate, ranges)
        if weight > best_weight:
            best, best_weight = candidate, weight
    return best


_cached_page_type = functools.lru_cache(maxsize=64)(_page_type)


def _weight(media: str, ranges: list[tuple[str, float]]) -> float:
    """The q of the most specific range matching `media`; 0 when none does."""
    kind = media.partition("/")[0]
    found, specificity = 0.0, -1
    for pattern, weight in ranges:
        if pattern == media:
            rank = 2
        elif pattern == f"{kind}/*":
            rank = 1
        elif pattern == "*/*":
            rank = 0
        else:
            continue
        if rank > specificity:
            found, specificity = weight, rank
    return found


routes = [
    Route("/v2/webhooks/{webhook_id}/events", BareEndpoint(poll_events), methods=["GET"]),
    Route("/v2/accounts/{account_id}/events", BareEndpoint(ingest), methods=["POST"]),
]
