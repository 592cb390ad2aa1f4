"""Stream tokens and CORS: how a browser opens a stream without sending its API key (SPEC §5.4)."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from httpx_sse import connect_sse

from tests.server import Api, Server, hosted_webhook

ORIGIN = "http://console.example.test"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    server = Server(tmp_path_factory.mktemp("tokens"), {"HOOKSTREAM_CORS_ORIGINS": ORIGIN}).start()
    yield server
    server.kill()


def stream_token(api: Api, webhook_id: str) -> dict[str, Any]:
    response = api.http.post(f"/v2/webhooks/{webhook_id}/stream-token", headers=api.auth)
    assert response.status_code == 200, response.text
    data: dict[str, Any] = response.json()["data"]
    return data


def test_a_stream_token_opens_that_webhooks_stream_without_an_api_key(server: Server, customer: Api) -> None:
    account, webhook_id = hosted_webhook(customer)
    issued = stream_token(customer, webhook_id)
    assert issued["expires_at"].endswith("Z")
    assert issued["stream_url"] == f"/v2/webhooks/{webhook_id}/stream?token={issued['token']}"
    seq = customer.ingest(account, {"type": "message_received", "data": {"message": {"id": "m1"}}})[0]["seq"]
    with (
        httpx.Client(base_url=server.url, timeout=10) as client,
        connect_sse(client, "GET", issued["stream_url"] + "&afterSeq=0") as source,
    ):
        event = next(sse for sse in source.iter_sse() if sse.data)
    assert int(event.id) == seq


def test_a_stream_token_is_refused_for_any_other_webhook(customer: Api) -> None:
    account, webhook_id = hosted_webhook(customer)
    other = customer.create_webhook(account)["webhook_id"]
    token = stream_token(customer, webhook_id)["token"]
    response = customer.http.get(f"/v2/webhooks/{other}/stream", params={"token": token})
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "invalid_stream_token"


@pytest.mark.parametrize(
    "mangle", [lambda t: t[:-2] + ("AA" if t[-2:] != "AA" else "BB"), lambda t: "hst1.x.1.y", str.upper]
)
def test_a_tampered_or_made_up_stream_token_is_401(customer: Api, mangle: Callable[[str], str]) -> None:
    _, webhook_id = hosted_webhook(customer)
    token = stream_token(customer, webhook_id)["token"]
    response = customer.http.get(f"/v2/webhooks/{webhook_id}/stream", params={"token": mangle(token)})
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "invalid_stream_token"


def test_stream_tokens_need_the_owners_api_key(server: Server, customer: Api) -> None:
    _, webhook_id = hosted_webhook(customer)
    assert customer.http.post(f"/v2/webhooks/{webhook_id}/stream-token").status_code == 401
    with contextlib.closing(Api(server)) as stranger:
        response = stranger.http.post(f"/v2/webhooks/{webhook_id}/stream-token", headers=stranger.auth)
    assert response.status_code == 404


def test_a_stream_token_expires_after_the_configured_ttl(start_server: Callable[..., Server]) -> None:
    server = start_server({"HOOKSTREAM_STREAM_TOKEN_TTL": "1s"})
    with contextlib.closing(Api(server)) as api:
        _, webhook_id = hosted_webhook(api)
        issued = stream_token(api, webhook_id)
        url = f"/v2/webhooks/{webhook_id}/stream"
        with api.http.stream("GET", url, params={"token": issued["token"]}) as response:
            assert response.status_code == 200
        time.sleep(1.1)
        response = api.http.get(url, params={"token": issued["token"]})
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "expired_stream_token"


def test_another_process_with_the_same_settings_accepts_the_token(
    start_server: Callable[..., Server], tmp_path: Path
) -> None:
    first = start_server(directory=tmp_path)
    second = start_server(directory=tmp_path)  # same database, same admin token, no explicit secret
    stranger = start_server({"HOOKSTREAM_STREAM_TOKEN_SECRET": "another secret"}, directory=tmp_path)
    with contextlib.closing(Api(first)) as api:
        _, webhook_id = hosted_webhook(api)
        token = stream_token(api, webhook_id)["token"]
    url = f"/v2/webhooks/{webhook_id}/stream"
    with (
        httpx.Client(base_url=second.url, timeout=10) as client,
        client.stream("GET", url, params={"token": token}) as response,
    ):
        assert response.status_code == 200
    assert httpx.get(stranger.url + url, params={"token": token}).status_code == 401


def test_cors_lets_the_configured_origin_read_streams_and_get_tokens(server: Server, customer: Api) -> None:
    _, webhook_id = hosted_webhook(customer)
    preflight = customer.http.options(
        f"/v2/webhooks/{webhook_id}/stream-token",
        headers={
            "Origin": ORIGIN,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "x-api-key",
        },
    )
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == ORIGIN
    token = stream_token(customer, webhook_id)["token"]
    with customer.http.stream(
        "GET", f"/v2/webhooks/{webhook_id}/stream", params={"token": token}, headers={"Origin": ORIGIN}
    ) as response:
        assert response.status_code == 200
        assert response.headers["access-control-allow-origin"] == ORIGIN
        assert "hookstream-epoch" in response.headers["access-control-expose-headers"].lower()
    with customer.http.stream(
        "GET", f"/v2/webhooks/{webhook_id}/stream", params={"token": token}, headers={"Origin": "http://evil.test"}
    ) as foreign:
        assert "access-control-allow-origin" not in foreign.headers
