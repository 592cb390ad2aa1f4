"""HTTP routes, one module per resource, named after its URL."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send


class BareEndpoint:
    """A `request -> response` endpoint served as plain ASGI, so every write of its response skips a `send` wrapper.

    Starlette wraps a function endpoint's `send` to catch errors raised before the response starts. A stream
    writes once per event per subscriber for its whole life, and polling is the most frequent request, so
    that wrapper was a measurable share of both. Errors raised here still reach the app's handlers (the same
    JSON bodies): they go up to Starlette's ExceptionMiddleware, whose own wrapper does the same job for the
    whole router.
    """

    def __init__(self, endpoint: Callable[[Request], Awaitable[Response]]) -> None:
        self.endpoint = endpoint
        # The error bodies' `metadata.action` names the endpoint by this.
        self.__name__ = endpoint.__name__

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = await self.endpoint(Request(scope, receive, send))
        await response(scope, receive, send)
