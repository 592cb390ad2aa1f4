"""Accounts (SPEC §5.1) over a real server."""

from __future__ import annotations

import re
import uuid

import pytest

from tests.server import Api


def test_an_account_is_created_with_the_given_id_and_shown_idle(api: Api) -> None:
    chosen = f"acc-Mine_{uuid.uuid4().hex[:8]}@example.com"
    response = api.http.post("/v2/accounts", json={"account_id": chosen, "name": "Inbox"}, headers=api.auth)
    assert response.status_code == 201
    account = response.json()["data"]
    assert account["account_id"] == chosen
    assert account["name"] == "Inbox"
    assert account["connector"] == "ingest"
    assert account["monitoring"] == "idle" and account["active_webhooks"] == 0
    assert account["status_reason"] is None


def test_an_account_without_an_id_gets_a_generated_one(api: Api) -> None:
    response = api.http.post("/v2/accounts", headers=api.auth)
    assert response.status_code == 201
    assert re.fullmatch(r"acc_[0-9a-f]{16}", response.json()["data"]["account_id"])


def test_an_existing_account_id_is_a_409_even_for_another_key(api: Api) -> None:
    account = api.create_account()
    assert api.http.post("/v2/accounts", json={"account_id": account}, headers=api.auth).status_code == 409
    other = Api(api.server)
    assert other.http.post("/v2/accounts", json={"account_id": account}, headers=other.auth).status_code == 409
    other.close()


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"account_id": ""}, "account_id"),
        ({"account_id": "has space"}, "account_id"),
        ({"account_id": "-leading"}, "account_id"),
        ({"account_id": "trailing\n"}, "account_id"),
        ({"connector": "ingest\n"}, "connector"),
        ({"account_id": "x" * 129}, "account_id"),
        ({"account_id": 12}, "account_id"),
        ({"name": 3}, "name"),
        ({"connector": "not a connector"}, "connector"),
        ({"unknown": 1}, "unknown"),
    ],
)
def test_invalid_accounts_are_a_400_naming_the_field(api: Api, body: dict[str, object], field: str) -> None:
    response = api.http.post("/v2/accounts", json=body, headers=api.auth)
    assert response.status_code == 400
    assert response.json()["error"]["field"] == field


def test_accounts_are_listed_per_key_and_show_active_webhooks(api: Api) -> None:
    first, second = api.create_account(), api.create_account()
    api.create_webhook(first)
    stopped = api.create_webhook(first)["webhook_id"]
    api.http.post(f"/v2/webhooks/{stopped}/stop", headers=api.auth)
    listed = api.http.get("/v2/accounts", headers=api.auth).json()["data"]
    assert [(a["account_id"], a["active_webhooks"], a["monitoring"]) for a in listed] == [
        (first, 1, "running"),
        (second, 0, "idle"),
    ]
    other = Api(api.server)
    assert other.http.get("/v2/accounts", headers=other.auth).json()["data"] == []
    other.close()


def test_deleting_an_account_deletes_its_webhooks(api: Api) -> None:
    account = api.create_account()
    webhooks = [api.create_webhook(account)["webhook_id"] for _ in range(2)]
    response = api.http.delete(f"/v2/accounts/{account}", headers=api.auth)
    assert response.status_code == 200
    assert sorted(response.json()["data"]["webhooks_deleted"]) == sorted(webhooks)
    assert api.http.get(f"/v2/accounts/{account}", headers=api.auth).status_code == 404
    for webhook in webhooks:
        assert api.http.get(f"/v2/webhooks/{webhook}", headers=api.auth).status_code == 404
    ingest = api.http.post(
        f"/v2/accounts/{account}/events", json={"type": "message.new", "data": {}}, headers=api.admin
    )
    assert ingest.status_code == 404
