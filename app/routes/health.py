"""Operations (SPEC §9): `/healthz` and `/readyz` for the platform's probes, `/metrics` for Prometheus."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from app.context import context
from app.errors import ServiceUnavailable
from app.responses import success


async def healthz(request: Request) -> Response:
    return success({"status": "ok"}, "healthz")


async def readyz(request: Request) -> Response:
    try:
        await context(request).storage.ping()
    except Exception as exc:
        raise ServiceUnavailable(f"The database is not reachable: {type(exc).__name__}.") from None
    return success({"status": "ready"}, "readyz")


async def metrics(request: Request) -> Response:
    body, media_type = context(request).metrics.render()
    return Response(body, media_type=media_type)


routes = [
    Route("/healthz", healthz, methods=["GET"]),
    Route("/readyz", readyz, methods=["GET"]),
    Route("/metrics", metrics, methods=["GET"]),
]
