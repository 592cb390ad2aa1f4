from __future__ import annotations

import httpx
from starlette.routing import Route

from app.main import create_app
from app.settings import Settings
from tests.server import Api


def test_openapi_describes_every_route_the_server_has(api: Api) -> None:
    document = api.http.get("/openapi.json").json()
    app = create_app(Settings())
    for route in app.routes:
        if not isinstance(route, Route) or route.path in ("/openapi.json", "/console"):
            continue
        assert route.path in document["paths"], route.path
        described = {method.upper() for method in document["paths"][route.path]}
        assert set(route.methods or ()) - {"HEAD"} <= described, route.path


def test_metrics_count_appended_events_in_prometheus_text(api: Api) -> None:
    def appended() -> float:
        text = api.http.get("/metrics").text
        line = next(line for line in text.splitlines() if line.startswith("hookstream_events_appended_total"))
        return float(line.split()[-1])

    before = appended()
    account = api.create_account()
    api.create_webhook(account)
    api.ingest(account, {"type": "message_received", "data": {}}, {"type": "message_received", "data": {}})
    assert appended() == before + 2
    response = api.http.get("/metrics")
    assert response.headers["content-type"].startswith("text/plain")
    assert "hookstream_append_seconds_bucket" in response.text


def test_health_and_readiness_answer_without_credentials(api: Api) -> None:
    assert api.http.get("/healthz").json()["data"] == {"status": "ok"}
    assert httpx.get(api.server.url + "/readyz").json()["data"] == {"status": "ready"}


def test_a_deleted_webhook_and_a_revoked_key_are_refused_at_once_despite_caching(api: Api) -> None:
    account = api.create_account()
    webhook = api.create_webhook(account)["webhook_id"]
    assert api.http.get(f"/v2/webhooks/{webhook}/events", headers=api.auth).status_code == 200
    assert api.http.delete(f"/v2/webhooks/{webhook}", headers=api.auth).status_code == 200
    assert api.http.get(f"/v2/webhooks/{webhook}/events", headers=api.auth).status_code == 404

    keys = api.http.get("/v2/admin/api-keys", headers=api.admin).json()["data"]
    mine = next(key for key in keys if api.api_key.startswith(key["prefix"]) and key["revoked_at"] is None)
    assert api.http.get("/v2/accounts", headers=api.auth).status_code == 200
    assert api.http.delete(f"/v2/admin/api-keys/{mine['id']}", headers=api.admin).status_code == 200
    assert api.http.get("/v2/accounts", headers=api.auth).status_code == 401


def test_a_method_a_path_lacks_is_405_with_every_method_the_path_has_in_allow(api: Api) -> None:
    response = api.http.request("OPTIONS", "/v2/accounts", headers=api.auth)
    assert response.status_code == 405
    assert response.json()["error"]["code"] == "method_not_allowed"
    assert response.headers["allow"] == "GET, HEAD, POST"
    response = api.http.post("/v2/webhooks/0123456789abcdef01234567", headers=api.auth)
    assert response.status_code == 405
    assert response.headers["allow"] == "DELETE, GET, HEAD, PATCH, PUT"
