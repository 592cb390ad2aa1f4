from __future__ import annotations

from tests.server import Api


def test_key_account_webhook_ingest_poll_round_trip(api: Api) -> None:
    account = api.create_account()
    webhook = api.create_webhook(account, events=["message_received"])
    assert webhook["mode"] == "hosted"
    assert webhook["stream_url"] == f"/v2/webhooks/{webhook['webhook_id']}/stream"
    appended = api.ingest(
        account,
        {"type": "message_received", "data": {"message": {"id": "m1"}}},
        {"type": "email.new", "data": {"id": "e1"}},
    )
    page = api.poll(webhook["webhook_id"])
    assert [event["id"] for event in page["events"]] == [appended[0]["id"]]
    event = page["events"][0]
    assert event["seq"] == appended[0]["seq"]
    assert event["type"] == "message_received"
    assert event["account_id"] == account
    assert event["data"] == {"message": {"id": "m1"}}
    assert page["lastSeq"] == event["seq"]
    assert page["hasMore"] is False
