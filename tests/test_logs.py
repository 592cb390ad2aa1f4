"""Logs on a PaaS (SPEC §12): JSON lines with the request id, and X-Request-Id on every response."""

from __future__ import annotations

import io
import json
import logging
import re
import socket
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from httpx_sse import connect_sse
from starlette.requests import Request
from starlette.routing import Route

from app.logs import JsonFormatter
from app.main import create_app
from app.settings import Settings
from tests.monitoring import eventually, monitor_env
from tests.server import Api, Server

GENERATED = re.compile(r"[0-9a-f]{16}")


def json_lines(server: Server) -> list[dict[str, object]]:
    """Every line the server wrote, each parsed as one JSON object (a line that is not one fails the test)."""
    return [json.loads(line) for line in server.log().splitlines() if line.strip()]


def test_json_logs_are_one_object_per_line_and_the_access_line_has_the_request_id(
    start_server: Callable[..., Server],
) -> None:
    server = start_server({"HOOKSTREAM_LOG_FORMAT": "json", "HOOKSTREAM_ACCESS_LOG": "1"})
    response = httpx.get(server.url + "/healthz", headers={"X-Request-Id": "router-7f3a"})
    assert response.headers["x-request-id"] == "router-7f3a"
    server.stop()

    lines = json_lines(server)
    assert all({"time", "level", "logger", "message"} <= line.keys() for line in lines)
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", str(line["time"])) for line in lines)
    # The start-up probes are access lines too, each with an id of its own.
    access = [line for line in lines if line["logger"] == "uvicorn.access"]
    assert all(GENERATED.fullmatch(str(line["request_id"])) for line in access[:-1])
    assert access[-1]["request_id"] == "router-7f3a"
    assert (access[-1]["method"], access[-1]["path"], access[-1]["status"]) == ("GET", "/healthz", 200)
    # uvicorn's own lines come through the same formatter; outside a request they carry no id.
    startup = next(line for line in lines if line["message"] == "Application startup complete.")
    assert startup["logger"] == "uvicorn.error" and "request_id" not in startup


def test_text_logs_write_the_request_id_on_the_access_line(start_server: Callable[..., Server]) -> None:
    server = start_server({"HOOKSTREAM_ACCESS_LOG": "1"})
    httpx.get(server.url + "/readyz", headers={"X-Request-Id": "abc-123"})
    server.stop()
    assert re.search(r'^INFO: +\S+ - "GET /readyz HTTP/1.1" 200 request_id=abc-123$', server.log(), re.M)


def test_a_request_id_is_made_when_the_caller_sends_none_or_one_that_is_not_sane(
    start_server: Callable[..., Server],
) -> None:
    server = start_server()
    first = httpx.get(server.url + "/healthz").headers["x-request-id"]
    second = httpx.get(server.url + "/healthz").headers["x-request-id"]
    assert GENERATED.fullmatch(first) and GENERATED.fullmatch(second) and first != second
    too_long = httpx.get(server.url + "/healthz", headers={"X-Request-Id": "x" * 129})
    assert GENERATED.fullmatch(too_long.headers["x-request-id"])
    longest = httpx.get(server.url + "/healthz", headers={"X-Request-Id": "y" * 128})
    assert longest.headers["x-request-id"] == "y" * 128
    # Bytes past ASCII (sent raw: clients refuse to) are no id a log can show faithfully: replaced.
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Request-Id: caf\xc3\xa9\r\nConnection: close\r\n\r\n")
        head = b""
        while b"\r\n\r\n" not in head:
            head += sock.recv(4096)
    echoed = re.search(rb"x-request-id: ([^\r]*)", head, re.I)
    assert echoed is not None and GENERATED.fullmatch(echoed.group(1).decode())


def test_errors_and_streams_carry_the_request_id(
    start_server: Callable[..., Server], connect: Callable[..., Api]
) -> None:
    api = connect(start_server())
    missing = api.http.get("/v2/webhooks/" + "0" * 24, headers={**api.auth, "X-Request-Id": "req-404"})
    assert missing.status_code == 404 and missing.headers["x-request-id"] == "req-404"
    unauthorized = api.http.get("/v2/webhooks", headers={"X-Request-Id": "req-401"})
    assert unauthorized.status_code == 401 and unauthorized.headers["x-request-id"] == "req-401"
    webhook_id = api.create_webhook(api.create_account())["webhook_id"]
    url = f"{api.server.url}/v2/webhooks/{webhook_id}/stream"
    with (
        httpx.Client(timeout=10) as client,
        connect_sse(client, "GET", url, headers={**api.auth, "X-Request-Id": "req-sse"}) as source,
    ):
        assert source.response.headers["x-request-id"] == "req-sse"
        assert source.response.headers["content-type"].startswith("text/event-stream")


def test_lines_logged_while_serving_a_request_carry_its_id_and_later_ones_from_its_tasks_do_not(
    start_server: Callable[..., Server], connect: Callable[..., Api], tmp_path: Path
) -> None:
    (tmp_path / "upstream-down").touch()
    api = connect(start_server(monitor_env(tmp_path, HOOKSTREAM_LOG_FORMAT="json")))
    account_id = api.create_account()
    webhook_id = api.create_webhook(account_id, events=["message_received"])["webhook_id"]
    # Changing the filter makes the monitor log, while the PATCH is being served.
    response = api.http.patch(
        f"/v2/webhooks/{webhook_id}",
        json={"events": ["message_received", "accepted_invitation"]},
        headers={**api.auth, "X-Request-Id": "req-patch"},
    )
    assert response.status_code == 200
    # A monitor started by a request runs on after it: its failures are not that request's.
    flaky = api.create_account(connector="tests.example_connector:FlakyConnector")
    created = api.http.post("/v2/webhooks", json={"account_id": flaky}, headers={**api.auth, "X-Request-Id": "req-c"})
    assert created.status_code == 201
    # The first failure may come while the POST is still being served; retries come after backoff.
    failures = eventually(
        lambda: [line for line in json_lines(api.server) if "upstream returned" in str(line["message"])][1:]
    )
    failure = failures[-1]
    subscribed = next(line for line in json_lines(api.server) if "now subscribes to" in str(line["message"]))
    assert subscribed["request_id"] == "req-patch"
    assert failure["level"] == "WARNING" and "request_id" not in failure


@pytest.mark.anyio
async def test_an_unexpected_error_is_logged_with_the_request_id_its_500_carries(tmp_path: Path) -> None:
    # No route fails on purpose, so this one app gets one that does; the route needs no lifespan.
    app = create_app(Settings(database_url=f"sqlite:///{tmp_path / 'hookstream.db'}"))

    async def broken(request: Request) -> None:
        raise RuntimeError("a bug")

    app.router.routes.append(Route("/broken", broken))
    output = io.StringIO()
    handler = logging.StreamHandler(output)
    handler.setFormatter(JsonFormatter())
    logging.getLogger("hookstream").addHandler(handler)
    try:
        transport = httpx.ASGITransport(app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://hookstream") as client:
            response = await client.get("/broken", headers={"X-Request-Id": "req-500"})
    finally:
        logging.getLogger("hookstream").removeHandler(handler)
    assert response.status_code == 500 and response.headers["x-request-id"] == "req-500"
    assert response.json()["success"] is False
    logged = [json.loads(line) for line in output.getvalue().splitlines()]
    error = next(line for line in logged if str(line["message"]).startswith("unhandled error on GET /broken"))
    assert error["request_id"] == "req-500" and error["level"] == "ERROR"
    assert "RuntimeError: a bug" in str(error["exception"])
