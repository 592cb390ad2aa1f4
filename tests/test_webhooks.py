"""Webhooks (SPEC §5.2, §5.5, §4) over a real server: lifecycle, filters, utilities, the catalog."""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.server import Api


def path(webhook_id: str, action: str = "") -> str:
    return f"/v2/webhooks/{webhook_id}" + (f"/{action}" if action else "")


def test_a_hosted_webhook_is_created_active_with_its_urls(api: Api) -> None:
    account = api.create_account()
    response = api.http.post("/v2/webhooks", json={"account_id": account}, headers=api.auth)
    assert response.status_code == 201
    body = response.json()
    assert body["success"] is True and body["metadata"]["action"] == "create_webhook"
    webhook = body["data"]
    assert re.fullmatch(r"[0-9a-f]{24}", webhook["webhook_id"])
    assert webhook["account_id"] == account
    assert webhook["mode"] == "hosted"
    assert webhook["events"] == ["all"]
    assert webhook["is_active"] is True
    assert webhook["stream_url"] == f"/v2/webhooks/{webhook['webhook_id']}/stream"
    assert webhook["events_url"] == f"/v2/webhooks/{webhook['webhook_id']}/events"
    assert "secret" not in webhook and "url" not in webhook
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", webhook["created_at"])


def test_webhooks_are_got_and_listed_per_key_and_account(api: Api) -> None:
    first, second = api.create_account(), api.create_account()
    a = api.create_webhook(first)["webhook_id"]
    b = api.create_webhook(second)["webhook_id"]
    c = api.create_webhook(first, events=["message.new"])["webhook_id"]
    got = api.http.get(path(c), headers=api.auth).json()["data"]
    assert got["webhook_id"] == c and got["events"] == ["message.new"]
    listed = api.http.get("/v2/webhooks", headers=api.auth).json()["data"]
    assert [w["webhook_id"] for w in listed] == [a, b, c]
    of_first = api.http.get("/v2/webhooks", params={"account_id": first}, headers=api.auth).json()["data"]
    assert [w["webhook_id"] for w in of_first] == [a, c]
    unknown = api.http.get("/v2/webhooks", params={"account_id": "acc_unknown"}, headers=api.auth)
    assert unknown.status_code == 404


@pytest.mark.parametrize("method", ["PATCH", "PUT"])
def test_patch_and_put_change_only_the_fields_given(api: Api, method: str) -> None:
    account = api.create_account()
    webhook = api.create_webhook(account, events=["message.new"])
    response = api.http.request(method, path(webhook["webhook_id"]), json={"events": ["email.*"]}, headers=api.auth)
    assert response.status_code == 200
    changed = response.json()["data"]
    assert changed["events"] == ["email.*"]
    assert changed["is_active"] is True and changed["mode"] == "hosted"
    untouched = api.http.request(method, path(webhook["webhook_id"]), json={}, headers=api.auth).json()["data"]
    assert untouched["events"] == ["email.*"]


def test_a_hosted_webhook_cannot_be_given_a_url_by_patch(api: Api) -> None:
    webhook = api.create_webhook(api.create_account())
    response = api.http.patch(path(webhook["webhook_id"]), json={"url": "https://example.com/h"}, headers=api.auth)
    assert response.status_code == 400 and response.json()["error"]["field"] == "url"


def test_stop_and_start_are_idempotent_and_change_active_counts(api: Api) -> None:
    account = api.create_account()
    webhook = api.create_webhook(account)["webhook_id"]
    for _ in range(2):
        stopped = api.http.post(path(webhook, "stop"), headers=api.auth)
        assert stopped.status_code == 200 and stopped.json()["data"]["is_active"] is False
    got = api.http.get(f"/v2/accounts/{account}", headers=api.auth).json()["data"]
    assert got["active_webhooks"] == 0 and got["monitoring"] == "idle"
    for _ in range(2):
        started = api.http.post(path(webhook, "start"), headers=api.auth)
        assert started.status_code == 200 and started.json()["data"]["is_active"] is True
    got = api.http.get(f"/v2/accounts/{account}", headers=api.auth).json()["data"]
    assert got["active_webhooks"] == 1 and got["monitoring"] == "running"


def test_a_deleted_webhook_is_unknown_everywhere(api: Api) -> None:
    account = api.create_account()
    webhook = api.create_webhook(account)["webhook_id"]
    api.ingest(account, {"type": "message.new", "data": {}})
    deleted = api.http.delete(path(webhook), headers=api.auth)
    assert deleted.status_code == 200 and deleted.json()["data"] == {"webhook_id": webhook, "deleted": True}
    for method, url in [
        ("GET", path(webhook)),
        ("PATCH", path(webhook)),
        ("DELETE", path(webhook)),
        ("POST", path(webhook, "stop")),
        ("POST", path(webhook, "start")),
        ("POST", path(webhook, "test")),
        ("GET", path(webhook, "events")),
    ]:
        response = api.http.request(method, url, json={} if method == "PATCH" else None, headers=api.auth)
        assert response.status_code == 404, (method, url)
        assert response.json()["error"]["code"] == "webhook_not_found"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "account_id"),
        ({"account_id": 5}, "account_id"),
        ({"account_id": "ACC", "events": []}, "events"),
        ({"account_id": "ACC", "events": "all"}, "events"),
        ({"account_id": "ACC", "events": [1]}, "events"),
        ({"account_id": "ACC", "events": ["not.a.type"]}, "events"),
        ({"account_id": "ACC", "events": ["message.**"]}, "events"),
        ({"account_id": "ACC", "events": ["nothing.*"]}, "events"),
        ({"account_id": "ACC", "url": "ftp://example.com"}, "url"),
        ({"account_id": "ACC", "url": 7}, "url"),
        ({"account_id": "ACC", "compressed_delivery": "yes"}, "compressed_delivery"),
        ({"account_id": "ACC", "colour": "blue"}, "colour"),
    ],
)
def test_invalid_webhooks_are_a_400_naming_the_field(api: Api, body: dict[str, Any], field: str) -> None:
    account = api.create_account()
    body = {k: account if v == "ACC" else v for k, v in body.items()}
    response = api.http.post("/v2/webhooks", json=body, headers=api.auth)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["field"] == field
    assert api.http.get("/v2/webhooks", params={"account_id": account}, headers=api.auth).json()["data"] == []


def test_an_invalid_filter_is_refused_with_the_valid_types_listed(api: Api) -> None:
    account = api.create_account()
    response = api.http.post("/v2/webhooks", json={"account_id": account, "events": ["mesage.new"]}, headers=api.auth)
    message = response.json()["error"]["message"]
    assert "message.new" in message and "email.new" in message and "valid types" in message


def test_filters_accept_aliases_patterns_and_all(api: Api) -> None:
    account = api.create_account()
    assert api.create_webhook(account, events=["mail_opened"])["events"] == ["tracking.open"]
    assert api.create_webhook(account, events=["message.create.*.*"])["events"] == ["message.create.*.*"]
    assert api.create_webhook(account, events=["message.new", "all"])["events"] == ["all"]


def test_a_filter_matches_its_type_its_pattern_and_their_truncated_forms(api: Api) -> None:
    account = api.create_account()
    exact = api.create_webhook(account, events=["message.new"])["webhook_id"]
    pattern = api.create_webhook(account, events=["message.create.*.chat"])["webhook_id"]
    types = [
        "message.new",
        "message.new.truncated",
        "message.newer",
        "message.create.bot.chat",
        "message.create.bot.chat.truncated",
        "message.create.contact.card",
        "message.create.x.y.chat",
    ]
    api.ingest(account, *({"type": t, "data": {}} for t in types))
    assert [e["type"] for e in api.feed(exact)] == ["message.new", "message.new.truncated"]
    assert [e["type"] for e in api.feed(pattern)] == ["message.create.bot.chat", "message.create.bot.chat.truncated"]


def test_a_test_event_joins_only_that_webhooks_feed(api: Api) -> None:
    account = api.create_account()
    target = api.create_webhook(account, events=["email.new"])["webhook_id"]
    other = api.create_webhook(account)["webhook_id"]
    response = api.http.post(path(target, "test"), headers=api.auth)
    assert response.status_code == 201
    sent = response.json()["data"]
    assert sent["type"] == "webhook.test"
    [event] = api.feed(target)
    assert event["seq"] == sent["seq"] and event["type"] == "webhook.test" and event["account_id"] == account
    assert event["data"]["webhook_id"] == target
    assert api.feed(other) == []


def test_mock_payload_returns_an_example_envelope_from_the_catalog(api: Api) -> None:
    response = api.http.post("/v2/webhooks/mock-payload", json={"type": "mail_opened"}, headers=api.auth)
    assert response.status_code == 200
    envelope = response.json()["data"]
    assert envelope["type"] == "tracking.open"
    assert set(envelope) >= {"id", "seq", "type", "account_id", "timestamp", "version", "data"}
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", envelope["timestamp"])
    unknown = api.http.post("/v2/webhooks/mock-payload", json={"type": "nope"}, headers=api.auth)
    assert unknown.status_code == 400 and unknown.json()["error"]["field"] == "type"


def test_event_types_lists_the_catalog_with_aliases(api: Api) -> None:
    response = api.http.get("/v2/event-types", headers=api.auth)
    assert response.status_code == 200
    types = {entry["type"]: entry for entry in response.json()["data"]}
    assert {"message_received", "accepted_invitation", "message.new", "email.new"} <= set(types)
    assert "mail_opened" in types["tracking.open"]["aliases"]
    assert all(isinstance(entry["data"], dict) and entry["description"] for entry in types.values())
