"""Credentials, ownership and malformed input (SPEC §2, §5, §6) on every route of the real server."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.routing import Match, Route

from app.main import create_app
from app.settings import Settings
from tests.server import ADMIN_TOKEN, Api

SNAKE_CASE = re.compile(r"^[a-z][a-z0-9_]*$")
ALL_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


APP_ROUTES = [route for route in create_app(Settings()).routes if isinstance(route, Route) and route.methods]


def _routes() -> list[tuple[str, str]]:
    """(method, path template) of every route the app serves, so routes added later are covered too."""
    found: set[tuple[str, str]] = set()
    for route in APP_ROUTES:
        found.update((method, route.path) for method in route.methods or () if method != "HEAD")
    return sorted(found, key=lambda item: (item[1], item[0]))


def served_methods(url: str) -> set[str]:
    """Every method some route serves at this concrete path (templates overlap: /v2/webhooks/mock-payload)."""
    methods: set[str] = set()
    for route in APP_ROUTES:
        for method in ALL_METHODS:
            match, _ = route.matches({"type": "http", "path": url, "method": method})
            if match == Match.FULL:
                methods.add(method)
    return methods


ROUTES = _routes()
PATHS = sorted({path for _, path in ROUTES})


def is_admin_route(method: str, path: str) -> bool:
    return path.startswith("/v2/admin/") or (method == "POST" and path == "/v2/accounts/{account_id}/events")


def fill(path: str, account: str, webhook: str, key_id: str = "key_0000000000000000") -> str:
    return path.replace("{account_id}", account).replace("{webhook_id}", webhook).replace("{key_id}", key_id)


def assert_error_shape(response: httpx.Response) -> dict[str, Any]:
    """The SPEC's error body: never a 500, always success false with a snake_case code and a message."""
    assert response.status_code != 500, response.text
    assert 400 <= response.status_code < 500 or response.status_code == 503, response.text
    assert response.headers["content-type"].startswith("application/json"), response.text
    body: dict[str, Any] = response.json()
    assert body["success"] is False
    assert SNAKE_CASE.match(body["error"]["code"]), body
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    assert body["metadata"]["credits_consumed"] == 0
    assert "Traceback" not in response.text
    return body


def request(http: httpx.Client, method: str, url: str, **kwargs: Any) -> httpx.Response:
    """A request whose streaming responses (SSE) are not read to the end."""
    with http.stream(method, url, **kwargs) as response:
        if response.status_code >= 300 or "event-stream" not in response.headers.get("content-type", ""):
            response.read()
    return response


OWNED_ROUTES = [(m, p) for m, p in ROUTES if ("{account_id}" in p or "{webhook_id}" in p) and not is_admin_route(m, p)]


@pytest.mark.parametrize(("method", "path"), OWNED_ROUTES)
def test_another_keys_account_or_webhook_is_a_404_on_every_route(api: Api, method: str, path: str) -> None:
    account = api.create_account()
    webhook = api.create_webhook(account)["webhook_id"]
    intruder = Api(api.server)
    try:
        response = request(intruder.http, method, fill(path, account, webhook), json={}, headers=intruder.auth)
        assert response.status_code == 404, response.text
        assert_error_shape(response)
    finally:
        intruder.close()
    assert api.http.get(f"/v2/webhooks/{webhook}", headers=api.auth).json()["data"]["is_active"] is True


def test_another_keys_account_cannot_be_given_webhooks_or_listed(api: Api) -> None:
    account = api.create_account()
    intruder = Api(api.server)
    try:
        created = intruder.http.post("/v2/webhooks", json={"account_id": account}, headers=intruder.auth)
        assert created.status_code == 404
        assert_error_shape(created)
        listed = intruder.http.get("/v2/webhooks", params={"account_id": account}, headers=intruder.auth)
        assert listed.status_code == 404
        assert intruder.http.get("/v2/webhooks", headers=intruder.auth).json()["data"] == []
    finally:
        intruder.close()
    assert api.http.get(f"/v2/accounts/{account}", headers=api.auth).json()["data"]["active_webhooks"] == 0


@pytest.mark.parametrize(("method", "path"), [(m, p) for m, p in ROUTES if is_admin_route(m, p)])
def test_admin_routes_need_the_admin_token(api: Api, method: str, path: str) -> None:
    account = api.create_account()
    url = fill(path, account, "0" * 24)
    body = {"name": "x"} if "api-keys" in path else {"type": "message.new", "data": {}}
    for headers in (
        {},
        {"authorization": "Bearer wrong-token"},
        {"authorization": f"Basic {ADMIN_TOKEN}"},
        {"authorization": ADMIN_TOKEN},
        {"authorization": "Bearer"},
        {"x-api-key": api.api_key},
    ):
        response = api.http.request(method, url, json=body, headers=headers)
        assert response.status_code == 401, (headers, response.text)
        assert_error_shape(response)


@pytest.mark.parametrize(
    ("method", "path"), [(m, p) for m, p in ROUTES if p.startswith("/v2/") and not is_admin_route(m, p)]
)
def test_customer_routes_need_a_valid_api_key(api: Api, method: str, path: str) -> None:
    account = api.create_account()
    url = fill(path, account, api.create_webhook(account)["webhook_id"])
    for headers in ({}, {"x-api-key": "hk_wrong"}, {"authorization": f"Bearer {ADMIN_TOKEN}"}):
        response = request(api.http, method, url, json={}, headers=headers)
        assert response.status_code == 401, (headers, response.text)
        assert_error_shape(response)


def test_a_revoked_key_stops_working_and_keys_are_stored_only_hashed(api: Api) -> None:
    created = api.http.post("/v2/admin/api-keys", json={"name": "short-lived"}, headers=api.admin)
    key = created.json()["data"]
    assert key["api_key"].startswith("hk_")
    customer = Api(api.server, key["api_key"])
    assert customer.http.get("/v2/accounts", headers=customer.auth).status_code == 200
    listed = api.http.get("/v2/admin/api-keys", headers=api.admin).json()["data"]
    assert key["id"] in [k["id"] for k in listed]
    assert all("api_key" not in k for k in listed)
    if api.server.database_url.startswith("sqlite:///"):
        database = Path(api.server.database_url.removeprefix("sqlite:///"))
        stored = b"".join(p.read_bytes() for p in database.parent.glob(database.name + "*") if p.is_file())
        assert stored and key["api_key"].encode() not in stored
    assert api.http.delete(f"/v2/admin/api-keys/{key['id']}", headers=api.admin).status_code == 200
    assert customer.http.get("/v2/accounts", headers=customer.auth).status_code == 401
    assert api.http.delete("/v2/admin/api-keys/key_unknown", headers=api.admin).status_code == 404
    customer.close()


MALFORMED_BODIES: list[bytes] = [
    b"",
    b"not json",
    b"{",
    b"[1, 2, 3]",
    b'"a string"',
    b"12",
    b"null",
    b'{"account_id": 5, "events": 7, "type": 9, "data": 1, "name": [], "url": {}, "id": false}',
    b'{"account_id": 1e999, "limit": 99999999999999999999999999999999, "afterSeq": -1e308}',
    b'{"type": "\\ud800", "data": {"x": "\\ud800"}, "name": "\\udfff"}',
    b'{"account_id": "\\ud800", "name": "\\ud800"}',
    '{"name": "\u0000\u202e\U0001f4a5", "account_id": "\u202e\U0001f4a5", "events": ["\u0000"]}'.encode(),
    b'{"name": "\xff\xfe\xfd"}',
    b"\xff\xfe\x00\x00",
    b"[" * 5000 + b"]" * 5000,
    b'{"events": [' + b",".join([b'{"type": "message.new", "data": []}'] * 3) + b"]}",
    b'{"events": "all", "type": "message.new\\nevent: x", "data": {}}',
    # Deeper than orjson writes (254 levels) though not deeper than it reads (1024).
    b'{"type": "message.new", "name": "n", "data": ' + b'{"a":' * 300 + b"1" + b"}" * 300 + b"}",
    b'{"events": [{"type": "message.new", "data": ' + b'{"a":' * 300 + b"1" + b"}" * 300 + b"}]}",
]


@pytest.mark.parametrize(("method", "path"), ROUTES)
def test_a_battery_of_malformed_requests_never_yields_a_500(api: Api, method: str, path: str) -> None:
    account = api.create_account()
    webhook = api.create_webhook(account)["webhook_id"]
    url = fill(path, account, webhook)
    headers = {**api.auth, **api.admin, "content-type": "application/json"}
    for body in MALFORMED_BODIES:
        response = request(api.http, method, url, content=body, headers=headers)
        if response.status_code >= 400:
            assert_error_shape(response)
        else:
            assert response.status_code != 500
    for params in (
        {"afterSeq": "\x00", "limit": "\u0661\u0662", "wait": "1e999"},
        {"afterSeq": "9" * 40, "limit": "9" * 40, "wait": "-0"},
        {"account_id": "\U0001f4a5", "afterSeq": " 1", "limit": "1\n"},
    ):
        response = request(api.http, method, url, params=params, headers=headers, content=b"{}")
        if response.status_code >= 400:
            assert_error_shape(response)
    for weird in ("%00", "%ED%A0%80", "%F0%9F%92%A5", "..%2F..%2Fetc", "x" * 3000, "%25"):
        weird_url = fill(path, weird, weird, weird)
        if weird_url != path and weird_url != url:
            response = request(api.http, method, weird_url, content=b"{}", headers=headers)
            if response.status_code >= 400:
                assert_error_shape(response)


@pytest.mark.parametrize("path", PATHS)
def test_a_wrong_method_is_a_405_in_the_error_shape(api: Api, path: str) -> None:
    account = api.create_account()
    url = fill(path, account, api.create_webhook(account)["webhook_id"])
    served = served_methods(url)
    for method in sorted(set(ALL_METHODS) - served):
        response = api.http.request(method, url, headers=api.auth)
        assert response.status_code == 405, (method, response.text)
        assert_error_shape(response)
        assert set(response.headers["allow"].replace(" ", "").split(",")) & served


@pytest.mark.parametrize(
    "url", ["/", "/v1/accounts", "/v2", "/v2/nothing", "/v2/webhooks/a/b/c/d", "/%00", "/v2/accounts/a/b/c"]
)
def test_an_unknown_route_is_a_404_in_the_error_shape(api: Api, url: str) -> None:
    for method in ("GET", "POST"):
        response = api.http.request(method, url, headers=api.auth)
        assert response.status_code == 404, response.text
        assert_error_shape(response)


def test_odd_credentials_are_refused_not_crashed_on(api: Api) -> None:
    odd: list[list[tuple[bytes, bytes]]] = [
        [(b"x-api-key", b"\xff\xfe")],
        [(b"x-api-key", b"x" * 8000)],
        [(b"authorization", b"Bearer \xff")],
        [(b"authorization", b"Bearer " + b"x" * 8000)],
    ]
    for headers in odd:
        response = api.http.get("/v2/accounts", headers=headers)
        assert response.status_code == 401, response.text
        assert_error_shape(response)
        response = api.http.post("/v2/admin/api-keys", json={"name": "x"}, headers=headers)
        assert response.status_code == 401, response.text
        assert_error_shape(response)


def test_health_endpoints_answer_without_credentials(api: Api) -> None:
    for path in ("/healthz", "/readyz"):
        response = httpx.get(api.server.url + path)
        assert response.status_code == 200
        assert response.json()["success"] is True
