"""A local webhook handler for the `listen` row: takes each POST, checks its `webhook-seq` follows the last.

`GET /stats` answers how many events arrived, how many were out of order, and when the first and
the last arrived, so a rate is measured at the receiver, the same way for `listen` and for the
load client that finds the receiver's own ceiling. `POST /reset` starts a new count.
"""

from __future__ import annotations

import time

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

state = {"count": 0, "last": 0, "disorder": 0, "first_at": 0.0, "last_at": 0.0}


async def hook(request: Request) -> Response:
    await request.body()
    seq = int(request.headers["webhook-seq"])
    now = time.monotonic()
    if not state["count"]:
        state["first_at"] = now
    if seq <= state["last"]:
        state["disorder"] += 1
    state["last"] = max(seq, int(state["last"]))
    state["count"] += 1
    state["last_at"] = now
    return Response(status_code=204)


async def stats(request: Request) -> Response:
    return Response(orjson.dumps(state), media_type="application/json")


async def reset(request: Request) -> Response:
    state.update(count=0, last=0, disorder=0, first_at=0.0, last_at=0.0)
    return Response(status_code=204)


async def healthz(request: Request) -> Response:
    return Response(b"ok")


app = Starlette(
    routes=[
        Route("/hook", hook, methods=["POST"]),
        Route("/stats", stats, methods=["GET"]),
        Route("/reset", reset, methods=["POST"]),
        Route("/healthz", healthz, methods=["GET"]),
    ]
)
