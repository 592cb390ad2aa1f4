"""Ingest (SPEC §6, §3) over a real server: batches, idempotency, monitoring, truncation, limits, type safety."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from tests.server import Api, Server


def post_events(api: Api, account: str, body: Any) -> Any:
    return api.http.post(f"/v2/accounts/{account}/events", json=body, headers=api.admin)


def monitored(api: Api, **fields: Any) -> tuple[str, str]:
    account = api.create_account()
    return account, api.create_webhook(account, **fields)["webhook_id"]


def test_a_single_event_is_appended_and_answered_with_its_id_and_seq(api: Api) -> None:
    account, webhook = monitored(api)
    response = post_events(
        api, account, {"type": "message.new", "data": {"id": "m1"}, "timestamp": "2025-01-15T12:00:00Z"}
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["success"] is True and body["metadata"]["credits_consumed"] == 0
    [appended] = body["data"]["events"]
    assert appended["id"].startswith("evt_")
    [event] = api.poll(webhook)["events"]
    assert event == {
        "id": appended["id"],
        "seq": appended["seq"],
        "type": "message.new",
        "account_id": account,
        "timestamp": "2025-01-15T12:00:00.000Z",
        "version": "1.0",
        "data": {"id": "m1"},
    }


@pytest.mark.parametrize(
    ("given", "stored"),
    [
        ("0861-08-30T20:59:50.123Z", "0861-08-30T20:59:50.123Z"),
        ("0001-01-01T00:00:00Z", "0001-01-01T00:00:00.000Z"),
        ("1969-12-31T23:59:59.999+00:00", "1969-12-31T23:59:59.999Z"),
        ("9999-12-31T23:59:59.999Z", "9999-12-31T23:59:59.999Z"),
    ],
)
def test_a_timestamp_of_any_year_is_stored_in_the_envelope_format(api: Api, given: str, stored: str) -> None:
    account, webhook = monitored(api)
    response = post_events(api, account, {"type": "message.new", "data": {}, "timestamp": given})
    assert response.status_code == 201, response.text
    [event] = api.poll(webhook)["events"]
    assert event["timestamp"] == stored


def test_a_producer_id_makes_ingest_idempotent(api: Api) -> None:
    account, webhook = monitored(api)
    first = api.ingest(account, {"id": "prod-1", "type": "message.new", "data": {}})
    again = api.ingest(account, {"id": "prod-1", "type": "message.new", "data": {"changed": True}})
    assert again == first == [{"id": "prod-1", "seq": first[0]["seq"]}]
    assert [e["data"] for e in api.feed(webhook)] == [{}]


def test_an_event_id_used_by_another_account_is_a_conflict(api: Api) -> None:
    first, _ = monitored(api)
    second, webhook = monitored(api)
    api.ingest(first, {"id": "shared-id", "type": "message.new", "data": {}})
    response = post_events(
        api,
        second,
        {"events": [{"type": "message.new", "data": {}}, {"id": "shared-id", "type": "message.new", "data": {}}]},
    )
    assert response.status_code == 409
    assert "events[1].id" in response.json()["error"]["message"]
    assert api.feed(webhook) == []


def test_a_batch_with_one_invalid_event_stores_nothing_and_names_the_index(api: Api) -> None:
    account, webhook = monitored(api)
    batch = [{"type": "message.new", "data": {}} for _ in range(5)]
    batch[3] = {"type": "message.new", "data": "not an object"}
    response = post_events(api, account, {"events": batch})
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["field"] == "events[3].data"
    assert "events[3]" in error["message"]
    assert api.feed(webhook) == []


def test_a_batch_holds_1_to_1000_events(api: Api) -> None:
    account, webhook = monitored(api)
    assert post_events(api, account, {"events": []}).status_code == 400
    too_many = [{"type": "message.new", "data": {}}] * 1001
    response = post_events(api, account, {"events": too_many})
    assert response.status_code == 400 and response.json()["error"]["field"] == "events"
    full = api.ingest(account, *([{"type": "message.new", "data": {}}] * 1000))
    assert len({a["seq"] for a in full}) == 1000
    assert len(api.feed(webhook)) == 1000


def test_an_account_without_an_active_webhook_is_not_monitored_and_nothing_is_stored(api: Api) -> None:
    account = api.create_account()
    response = post_events(api, account, {"type": "message.new", "data": {}})
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "account_not_monitored"
    webhook = api.create_webhook(account)["webhook_id"]
    api.http.post(f"/v2/webhooks/{webhook}/stop", headers=api.auth)
    assert post_events(api, account, {"type": "message.new", "data": {}}).status_code == 409
    api.http.post(f"/v2/webhooks/{webhook}/start", headers=api.auth)
    assert api.feed(webhook) == []
    assert post_events(api, account, {"type": "message.new", "data": {}}).status_code == 201


def test_ingest_into_an_unknown_account_is_a_404(api: Api) -> None:
    response = post_events(api, "acc_never_created", {"type": "message.new", "data": {}})
    assert response.status_code == 404


@pytest.mark.parametrize(
    "event_type",
    [
        "message.new\nevent: injected",
        "message.new\n",
        "message.new\r",
        "data: {}",
        "id:7",
        "message new",
        " message.new",
        "message..new",
        ".message",
        "message.",
        "",
        "x" * 129,
        "méssage",
        "message/new",
    ],
)
def test_unsafe_event_types_are_refused(api: Api, event_type: str) -> None:
    account, webhook = monitored(api)
    response = post_events(api, account, {"type": event_type, "data": {}})
    assert response.status_code == 400, response.text
    assert response.json()["error"]["field"] == "type"
    assert api.feed(webhook) == []


def test_a_type_of_128_characters_is_accepted(api: Api) -> None:
    account, webhook = monitored(api)
    api.ingest(account, {"type": "a" * 128, "data": {}})
    assert [e["type"] for e in api.feed(webhook)] == ["a" * 128]


def test_aliases_are_stored_as_their_canonical_type(api: Api) -> None:
    account, webhook = monitored(api, events=["tracking.open", "message.update"])
    api.ingest(account, {"type": "mail_opened", "data": {}}, {"type": "message_edited", "data": {}})
    assert [e["type"] for e in api.feed(webhook)] == ["tracking.open", "message.update"]


@pytest.mark.parametrize(
    ("event", "field"),
    [
        ({"data": {}}, "type"),
        ({"type": 5, "data": {}}, "type"),
        ({"type": "message.new"}, "data"),
        ({"type": "message.new", "data": [1]}, "data"),
        ({"type": "message.new", "data": {}, "id": ""}, "id"),
        ({"type": "message.new", "data": {}, "id": "has space"}, "id"),
        ({"type": "message.new", "data": {}, "id": 12}, "id"),
        ({"type": "message.new", "data": {}, "id": "evt_1\n"}, "id"),
        ({"type": "message.new", "data": {}, "timestamp": "yesterday"}, "timestamp"),
        ({"type": "message.new", "data": {}, "timestamp": 1736942400}, "timestamp"),
        ({"type": "message.new", "data": {}, "timestamp": "0001-01-01T00:00:00+01:00"}, "timestamp"),
        ({"type": "message.new", "data": {}, "timestamp": "9999-12-31T23:59:59-01:00"}, "timestamp"),
        ({"type": "message.new", "data": {}, "extra": 1}, "extra"),
    ],
)
def test_invalid_events_are_a_400_naming_the_field(api: Api, event: dict[str, Any], field: str) -> None:
    account, webhook = monitored(api)
    response = post_events(api, account, event)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["field"] == field
    response = post_events(api, account, {"events": [{"type": "message.new", "data": {}}, event]})
    assert response.status_code == 400, response.text
    assert response.json()["error"]["field"] == f"events[1].{field}"
    assert api.feed(webhook) == []


def test_an_event_over_the_size_limit_is_stored_truncated_to_its_identifiers(
    start_server: Callable[..., Server],
) -> None:
    api = Api(start_server({"HOOKSTREAM_MAX_EVENT_BYTES": "2000"}))
    account, webhook = monitored(api, events=["message.new"])
    data = {
        "id": "m1",
        "thread_id": "t1",
        "senderId": "s1",
        "body": "x" * 5000,
        "message": {"id": "inner", "conversation_id": "c1", "text": "y" * 100, "deep": {"id": "too deep"}},
        "attachments": [{"id": "a1"}],
    }
    small = api.ingest(account, {"type": "message.new", "data": {"id": "small"}})
    big = api.ingest(account, {"type": "message.new", "data": data})
    events = api.feed(webhook)
    assert [e["seq"] for e in events] == [small[0]["seq"], big[0]["seq"]]
    assert events[0]["type"] == "message.new"
    assert events[1]["type"] == "message.new.truncated"
    assert events[1]["data"] == {
        "id": "m1",
        "thread_id": "t1",
        "senderId": "s1",
        "message": {"id": "inner", "conversation_id": "c1"},
    }
    api.close()


def test_a_body_over_the_body_limit_is_a_413(start_server: Callable[..., Server]) -> None:
    api = Api(start_server({"HOOKSTREAM_MAX_BODY_BYTES": "4096"}))
    account, webhook = monitored(api)
    response = post_events(api, account, {"type": "message.new", "data": {"blob": "x" * 8000}})
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "body_too_large"
    chunked = api.http.post(
        f"/v2/accounts/{account}/events",
        content=iter([b'{"type":"message.new","data":{"blob":"', b"x" * 8000, b'"}}']),
        headers={**api.admin, "content-type": "application/json"},
    )
    assert chunked.status_code == 413
    assert api.feed(webhook) == []
    api.close()


def test_data_nested_too_deeply_to_store_is_a_400_not_a_500(api: Api) -> None:
    account, webhook = monitored(api)
    nested = b'{"a":' * 300 + b"1" + b"}" * 300
    body = b'{"type": "message.new", "data": ' + nested + b"}"
    response = api.http.post(
        f"/v2/accounts/{account}/events", content=body, headers={**api.admin, "content-type": "application/json"}
    )
    assert response.status_code == 400, response.text
    assert response.json()["error"]["field"] == "data"
    assert api.feed(webhook) == []


def test_odd_but_valid_data_round_trips(api: Api) -> None:
    account, webhook = monitored(api)
    data = {"big": 18446744073709551615, "text": "\u0000\u202e\U0001f4a5 é", "nested": {"list": [None, True, 1.5]}}
    api.ingest(account, {"type": "message.new", "data": data})
    assert [e["data"] for e in api.feed(webhook)] == [data]
