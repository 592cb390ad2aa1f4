"""Polling anchor: a bare Starlette app returning hookstream's pages, precomputed in memory.

At start it reads the benchmark log (BENCH_LOG, BENCH_WEBHOOK) and builds the page bytes for
every `afterSeq` multiple of BENCH_LIMIT, byte for byte what hookstream would send; a request
costs routing, a dict lookup and the response, and nothing else.
"""

from __future__ import annotations

import os
import sqlite3

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

LIMIT = int(os.environ.get("BENCH_LIMIT", "100"))


def _pages() -> dict[int, bytes]:
    conn = sqlite3.connect(f"file:{os.environ['BENCH_LOG']}?mode=ro", uri=True)
    epoch = conn.execute("SELECT value FROM meta WHERE key = 'epoch'").fetchone()[0]
    bodies = [row[0] for row in conn.execute("SELECT body FROM events ORDER BY seq")]
    conn.close()
    pages = {}
    for start in range(0, len(bodies), LIMIT):
        chunk = bodies[start : start + LIMIT]
        more = b"true" if start + LIMIT < len(bodies) else b"false"
        pages[start] = b"".join(
            [
                b'{"success":true,"events":[',
                b",".join(chunk),
                b'],"hasMore":',
                more,
                b',"lastSeq":',
                str(start + len(chunk)).encode(),
                b',"epoch":"',
                epoch.encode(),
                b'"}',
            ]
        )
    return pages


PAGES = _pages()


async def page(request: Request) -> Response:
    after = int(request.query_params.get("afterSeq", "0"))
    return Response(PAGES[after - after % LIMIT], media_type="application/json")


async def healthz(request: Request) -> Response:
    return Response(b"ok")


app = Starlette(routes=[Route("/v2/webhooks/{webhook_id}/events", page), Route("/healthz", healthz)])
