"""Single-event ingest anchor: a bare Starlette app answering hookstream's ingest POSTs, storing nothing.

It parses the body and answers 201 with an id and a seq, as hookstream does; what it does not
do is everything between (validation, the envelope, the durable commit).
"""

from __future__ import annotations

import itertools

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

_SEQS = itertools.count(1)


async def ingest(request: Request) -> Response:
    event = orjson.loads(await request.body())
    seq = next(_SEQS)
    body = {"success": True, "data": {"events": [{"id": event.get("id") or f"evt_{seq}", "seq": seq}]}}
    return Response(orjson.dumps(body), status_code=201, media_type="application/json")


app = Starlette(routes=[Route("/v2/accounts/{account_id}/events", ingest, methods=["POST"])])
