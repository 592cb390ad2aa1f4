"""SSE anchor: a bare sse-starlette app broadcasting published events from memory, no storage.

`POST /pub` takes hookstream's ingest body (`{"events": [{"type", "data"}...]}`), numbers each
event and puts it on every subscriber's queue; `GET /sub` is an EventSourceResponse that sends
`id`, `event` and the envelope as `data`, the same fields hookstream streams.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator

import orjson
from sse_starlette.sse import EventSourceResponse
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

subscribers: set[asyncio.Queue[dict[str, object]]] = set()
sequence = itertools.count(1)


async def publish(request: Request) -> Response:
    body = orjson.loads(await request.body())
    for event in body["events"]:
        seq = next(sequence)
        envelope = {
            "id": f"evt_{seq}",
            "seq": seq,
            "type": event["type"],
            "account_id": "acc_bench",
            "timestamp": "2025-01-15T12:00:00.000Z",
            "version": "1.0",
            "data": event["data"],
        }
        message = {"id": str(seq), "event": event["type"], "data": orjson.dumps(envelope).decode()}
        for queue in subscribers:
            queue.put_nowait(message)
    return Response(b'{"success":true}', status_code=201, media_type="application/json")


async def subscribe(request: Request) -> Response:
    queue: asyncio.Queue[dict[str, object]] = asyncio.Queue()
    subscribers.add(queue)

    async def messages() -> AsyncIterator[dict[str, object]]:
        try:
            while True:
                yield await queue.get()
        finally:
            subscribers.discard(queue)

    return EventSourceResponse(messages(), ping=15)


async def healthz(request: Request) -> Response:
    return Response(b"ok")


app = Starlette(routes=[Route("/pub", publish, methods=["POST"]), Route("/sub", subscribe), Route("/healthz", healthz)])
