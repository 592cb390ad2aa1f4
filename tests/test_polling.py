"""Cursor polling (SPEC §5.3) over a real server: paging, concurrency, long polls, cursors, retention."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from tests.server import Api, Server


def events_of(count: int, prefix: str = "e") -> list[dict[str, Any]]:
    return [{"type": "message.new", "data": {"id": f"{prefix}{i}"}} for i in range(count)]


def monitored(api: Api, **fields: Any) -> tuple[str, str]:
    """An account with one hosted webhook: (account id, webhook id)."""
    account = api.create_account()
    return account, api.create_webhook(account, **fields)["webhook_id"]


def test_paginating_2500_events_with_last_seq_yields_each_exactly_once_in_order(api: Api) -> None:
    account, webhook = monitored(api)
    acknowledged: list[int] = []
    for start in range(0, 2500, 500):
        acknowledged.extend(a["seq"] for a in api.ingest(account, *events_of(500, f"b{start}-")))
    seen: list[int] = []
    cursor = 0
    pages = 0
    while True:
        page = api.poll(webhook, afterSeq=cursor, limit=100)
        pages += 1
        seen.extend(event["seq"] for event in page["events"])
        if page["events"]:
            assert page["lastSeq"] == page["events"][-1]["seq"]
            cursor = page["lastSeq"]
        if not page["hasMore"]:
            break
    assert seen == acknowledged
    assert pages == 25


def test_a_concurrent_producer_and_paginating_reader_never_skip_or_repeat(api: Api) -> None:
    account, webhook = monitored(api)
    acknowledged: list[int] = []
    done = threading.Event()
    failures: list[BaseException] = []

    def produce() -> None:
        try:
            with httpx.Client(base_url=api.server.url, timeout=30) as http:
                for batch in range(60):
                    body = {"events": events_of(1 + batch % 7, f"p{batch}-")}
                    response = http.post(f"/v2/accounts/{account}/events", json=body, headers=api.admin)
                    assert response.status_code == 201, response.text
                    acknowledged.extend(item["seq"] for item in response.json()["data"]["events"])
        except BaseException as exc:
            failures.append(exc)
        finally:
            done.set()

    producer = threading.Thread(target=produce)
    producer.start()
    seen: list[int] = []
    cursor = 0
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        finished = done.is_set()
        page = api.poll(webhook, afterSeq=cursor, limit=7, wait=1)
        seen.extend(event["seq"] for event in page["events"])
        if page["lastSeq"] is not None:
            cursor = page["lastSeq"]
        if finished and not page["hasMore"]:
            break
    producer.join()
    assert not failures, failures
    assert seen == sorted(acknowledged)
    assert len(seen) == len(set(seen)) == sum(1 + batch % 7 for batch in range(60))


def test_limit_defaults_to_100_and_is_clamped_to_1000(api: Api) -> None:
    account, webhook = monitored(api)
    api.ingest(account, *events_of(1000))
    api.ingest(account, *events_of(5, "more"))
    default = api.poll(webhook)
    assert len(default["events"]) == 100 and default["hasMore"] is True
    clamped = api.poll(webhook, limit=5000)
    assert len(clamped["events"]) == 1000 and clamped["hasMore"] is True
    rest = api.poll(webhook, afterSeq=clamped["lastSeq"], limit=5000)
    assert len(rest["events"]) == 5 and rest["hasMore"] is False


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"afterSeq": "-1"}, "afterSeq"),
        ({"afterSeq": "abc"}, "afterSeq"),
        ({"afterSeq": "1.5"}, "afterSeq"),
        ({"afterSeq": ""}, "afterSeq"),
        ({"afterSeq": "99999999999999999999999"}, "afterSeq"),
        ({"limit": "0"}, "limit"),
        ({"limit": "-5"}, "limit"),
        ({"limit": "ten"}, "limit"),
        ({"limit": "1e3"}, "limit"),
        ({"wait": "61"}, "wait"),
        ({"wait": "-1"}, "wait"),
        ({"wait": "soon"}, "wait"),
        ({"wait": "nan"}, "wait"),
        ({"wait": "inf"}, "wait"),
    ],
)
def test_bad_query_parameters_are_a_400_naming_the_field(api: Api, params: dict[str, str], field: str) -> None:
    _, webhook = monitored(api)
    response = api.http.get(f"/v2/webhooks/{webhook}/events", params=params, headers=api.auth)
    assert response.status_code == 400, response.text
    body = response.json()
    assert body["success"] is False
    assert body["error"]["field"] == field
    assert field in body["error"]["message"]


def test_a_long_poll_wakes_as_soon_as_an_event_arrives(api: Api) -> None:
    account, webhook = monitored(api)
    result: dict[str, Any] = {}

    def poll() -> None:
        with httpx.Client(base_url=api.server.url, timeout=30) as http:
            started = time.monotonic()
            result["page"] = http.get(
                f"/v2/webhooks/{webhook}/events", params={"afterSeq": 0, "wait": 20}, headers=api.auth
            ).json()
            result["elapsed"] = time.monotonic() - started

    reader = threading.Thread(target=poll)
    reader.start()
    time.sleep(0.5)
    [appended] = api.ingest(account, {"type": "message.new", "data": {"id": "late"}})
    reader.join(30)
    assert [event["seq"] for event in result["page"]["events"]] == [appended["seq"]]
    assert result["elapsed"] < 15


def test_a_long_poll_times_out_with_an_empty_page(api: Api) -> None:
    _, webhook = monitored(api)
    started = time.monotonic()
    page = api.poll(webhook, afterSeq=0, wait=1)
    elapsed = time.monotonic() - started
    assert page["events"] == [] and page["lastSeq"] is None and page["hasMore"] is False
    assert elapsed >= 0.9


def test_a_long_poll_is_not_woken_by_events_outside_its_feed(api: Api) -> None:
    account, webhook = monitored(api, events=["email.new"])
    api.create_webhook(account)  # keeps the account monitored for any type
    result: dict[str, Any] = {}

    def poll() -> None:
        with httpx.Client(base_url=api.server.url, timeout=30) as http:
            result["page"] = http.get(
                f"/v2/webhooks/{webhook}/events", params={"afterSeq": 0, "wait": 2}, headers=api.auth
            ).json()

    reader = threading.Thread(target=poll)
    reader.start()
    time.sleep(0.3)
    api.ingest(account, {"type": "message.new", "data": {}})
    reader.join(30)
    assert result["page"]["events"] == []


def test_a_cursor_beyond_the_newest_seq_is_a_409_cursor_ahead(api: Api) -> None:
    account, webhook = monitored(api)
    [appended] = api.ingest(account, {"type": "message.new", "data": {}})
    head = api.poll(webhook, afterSeq=appended["seq"])
    assert head["events"] == [] and head["lastSeq"] is None
    response = api.http.get(
        f"/v2/webhooks/{webhook}/events", params={"afterSeq": appended["seq"] + 1_000_000}, headers=api.auth
    )
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "cursor_ahead"


def test_an_inactive_webhooks_past_feed_stays_readable(api: Api) -> None:
    account, webhook = monitored(api)
    appended = api.ingest(account, *events_of(3))
    assert api.http.post(f"/v2/webhooks/{webhook}/stop", headers=api.auth).status_code == 200
    assert [e["seq"] for e in api.feed(webhook)] == [a["seq"] for a in appended]


def test_the_epoch_stays_the_same_across_a_restart(start_server: Callable[..., Server]) -> None:
    server = start_server()
    api = Api(server)
    account, webhook = monitored(api)
    [appended] = api.ingest(account, {"type": "message.new", "data": {}})
    before = api.poll(webhook)
    api.close()
    server.stop()
    server.start()
    again = Api(server, api.api_key)
    after = again.poll(webhook)
    assert after["epoch"] == before["epoch"]
    assert [e["seq"] for e in after["events"]] == [appended["seq"]]
    assert again.poll(webhook, afterSeq=appended["seq"])["events"] == []
    ahead = again.http.get(
        f"/v2/webhooks/{webhook}/events", params={"afterSeq": appended["seq"] + 1}, headers=again.auth
    )
    assert ahead.status_code == 409
    again.close()


def test_a_page_is_flagged_pruned_when_retention_deleted_events_after_the_cursor(
    start_server: Callable[..., Server],
) -> None:
    server = start_server(
        {"HOOKSTREAM_RETENTION": "2s", "HOOKSTREAM_RETENTION_INTERVAL": "200ms", "HOOKSTREAM_RETENTION_BATCH": "2"}
    )
    api = Api(server)
    account, webhook = monitored(api)
    old = api.ingest(account, *events_of(7))
    deadline = time.monotonic() + 30
    page = api.poll(webhook, afterSeq=0)
    while page["events"] and time.monotonic() < deadline:
        time.sleep(0.2)
        page = api.poll(webhook, afterSeq=0)
    assert page["events"] == [] and page["pruned"] is True
    [fresh] = api.ingest(account, {"type": "message.new", "data": {}})
    after_old = api.poll(webhook, afterSeq=old[0]["seq"])
    assert after_old["pruned"] is True
    assert [e["seq"] for e in after_old["events"]] == [fresh["seq"]]
    from_oldest = api.poll(webhook)
    assert "pruned" not in from_oldest
    assert [e["seq"] for e in from_oldest["events"]] == [fresh["seq"]]
    current = api.poll(webhook, afterSeq=old[-1]["seq"])
    assert "pruned" not in current
    # A webhook created after those events were deleted never had them in its feed.
    newcomer = api.create_webhook(account)["webhook_id"]
    assert "pruned" not in api.poll(newcomer, afterSeq=0)
    api.close()


def test_a_cursor_of_19_digits_is_ahead_and_one_of_20_digits_is_a_400(api: Api) -> None:
    _, webhook = monitored(api)
    url = f"/v2/webhooks/{webhook}/events"
    ahead = api.http.get(url, params={"afterSeq": "9223372036854775807"}, headers=api.auth)
    assert ahead.status_code == 409 and ahead.json()["error"]["code"] == "cursor_ahead"
    huge = api.http.get(url, params={"afterSeq": "99999999999999999999"}, headers=api.auth)
    assert huge.status_code == 400 and huge.json()["error"]["field"] == "afterSeq"
    last_event_id = {**api.auth, "Last-Event-ID": "9223372036854775807"}
    stream = api.http.get(f"/v2/webhooks/{webhook}/stream", headers=last_event_id)
    assert stream.status_code == 409 and stream.json()["error"]["code"] == "cursor_ahead"
