"""`/console`: the live console page and its static files."""

from __future__ import annotations

from pathlib import Path

from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

CONSOLE = Path(__file__).resolve().parent.parent / "console"


async def console(request: Request) -> Response:
    return FileResponse(CONSOLE / "index.html", headers={"cache-control": "no-cache"})


routes = [
    Route("/console", console, methods=["GET"]),
    Mount("/console", StaticFiles(directory=CONSOLE), name="console"),
]
