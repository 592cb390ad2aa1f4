"""`/v2/webhooks/{id}/stream` and its browser door, `/stream-token` (SPEC §5.4)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from app.auth import customer, owned_webhook, webhook_by_id
from app.context import context
from app.cursors import check_within_log, feed_pruned, parse_seq
from app.errors import InvalidStreamToken, WebhookNotFound
from app.requests import header_value, query_int
from app.responses import success
from app.routes import BareEndpoint
from app.streaming import EventStream, Streams
from app.times import iso_millis
from storage.base import Webhook


def open_streams(request: Request) -> Streams:
    """The open streams of the app serving this request."""
    streams: Streams = request.app.state.streams
    return streams


async def _streamed_webhook(request: Request) -> tuple[Webhook, str]:
    """The webhook to stream and the API key id it counts against, from `?token=` or `x-api-key`."""
    token = request.query_params.get("token")
    if token is None:
        key = await customer(request)
        return await owned_webhook(request, key), key.id
    webhook_id = request.path_params["webhook_id"]
    if open_streams(request).tokens.webhook_id(token) != webhook_id:
        raise InvalidStreamToken("The stream token is for another webhook's stream.")
    webhook = await webhook_by_id(request, webhook_id)
    if webhook is None:
        raise WebhookNotFound(webhook_id)
    # A browser's stream counts against the key that owns the webhook, as one with x-api-key would.
    key_rate = context(request).key_rate
    if key_rate is not None:
        key_rate.take(webhook.api_key_id)
    return webhook, webhook.api_key_id


def _requested_cursor(request: Request) -> tuple[int | None, str]:
    """Where the client asked to resume: `Last-Event-ID` (browsers' reconnects), else `afterSeq`."""
    # Not stripped: HTTP already trims the spaces around a header value, and str.strip() would also take others.
    raw = header_value(request, b"last-event-id")
    # Read even when the header wins, so a malformed afterSeq is refused rather than silently ignored.
    after = query_int(request, "afterSeq", minimum=0)
    if raw:
        what = "The Last-Event-ID header (the seq of the last event received)"
        return parse_seq(raw, what, field="Last-Event-ID"), "Last-Event-ID"
    return after, "afterSeq"


async def stream(request: Request) -> Response:
    webhook, key_id = await _streamed_webhook(request)
    requested, source = _requested_cursor(request)
    ctx = context(request)
    # A resume reads the watermark fresh: the cached one may predate a prune, and a stream that then
    # failed to say `pruned` would hide a gap from its client.
    state = await ctx.log_state() if requested is None else await ctx.storage.log_state()
    check_within_log(requested, source, state)
    if not webhook.is_active:
        # 204 tells EventSource not to reconnect.
        return Response(status_code=204, headers={"hookstream-epoch": state.epoch})
    streams = open_streams(request)
    streams.reserve(key_id)
    cursor = state.head_seq if requested is None else requested
    pruned = feed_pruned(webhook, requested, state.pruned_through, ctx.settings.retention)
    return EventStream(streams, webhook.id, key_id, cursor, state.epoch, state.pruned_through if pruned else None)


async def stream_token(request: Request) -> Response:
    key = await customer(request)
    webhook = await owned_webhook(request, key)
    issued = open_streams(request).tokens.issue(webhook.id)
    data = {
        "token": issued.token,
        "expires_at": iso_millis(issued.expires_at_ms * 1000),
        "webhook_id": webhook.id,
        "stream_url": f"/v2/webhooks/{webhook.id}/stream?token={issued.token}",
    }
    return success(data, "create_stream_token")


routes = [
    Route("/v2/webhooks/{webhook_id}/stream", BareEndpoint(stream), methods=["GET"]),
    Route("/v2/webhooks/{webhook_id}/stream-token", stream_token, methods=["POST"]),
]
