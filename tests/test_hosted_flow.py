from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable

from tests.server import ROOT, Api, Server


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


def test_a_key_made_with_the_cli_works_for_the_whole_hosted_flow(start_server: Callable[..., Server]) -> None:
    server = start_server()
    made = subprocess.run(
        [sys.executable, "-m", "app.cli", "admin", "create-key", "cli customer"],
        cwd=ROOT,
        env=server.env,
        capture_output=True,
        timeout=60,
        check=True,
    )
    secret = made.stdout.decode().strip()
    assert secret.startswith("hk_")
    api = Api(server, secret)
    account = api.create_account(name="Support inbox")
    webhook = api.create_webhook(account, events=["message.*"])["webhook_id"]
    first = api.ingest(account, {"type": "message.new", "data": {"id": "m1"}})
    api.http.post(f"/v2/webhooks/{webhook}/stop", headers=api.auth)
    other = api.create_webhook(account)["webhook_id"]
    api.ingest(account, {"type": "message.new", "data": {"id": "m2"}})
    api.http.post(f"/v2/webhooks/{webhook}/start", headers=api.auth)
    third = api.ingest(account, {"type": "message.update", "data": {"id": "m3"}})
    page = api.poll(webhook, afterSeq=0)
    assert [e["seq"] for e in page["events"]] == [first[0]["seq"], third[0]["seq"]]
    assert page["lastSeq"] == third[0]["seq"] and page["hasMore"] is False and page["epoch"]
    assert [e["data"]["id"] for e in api.feed(other)] == ["m2", "m3"]
    api.close()


def test_health_and_readiness_probes_answer(api: Api) -> None:
    assert api.http.get("/healthz").json()["data"] == {"status": "ok"}
    assert api.http.get("/readyz").json()["data"] == {"status": "ready"}
