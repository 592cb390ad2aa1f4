"""`/v2/event-types`: the platform's catalog of event types (SPEC §4)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from app.auth import customer
from app.context import context
from app.responses import success


async def event_types(request: Request) -> Response:
    await customer(request)
    return success([entry.to_dict() for entry in context(request).catalog.types], "list_event_types")


routes = [Route("/v2/event-types", event_types, methods=["GET"])]
