from __future__ import annotations

import base64
import gzip
import hashlib
import hmac
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from standardwebhooks import Webhook as Verifier
from standardwebhooks.webhooks import WebhookVerificationError

from tests.receiver import Receiver, wait_until
from tests.server import Api, Server, message

DELIVERY_ENV = {
    "HOOKSTREAM_ALLOW_HTTP": "1",
    "HOOKSTREAM_ALLOW_PRIVATE_URLS": "1",
    "HOOKSTREAM_RETRY_SCHEDULE": "200ms,400ms",
    "HOOKSTREAM_DELIVERY_TIMEOUT": "1s",
}


@pytest.fixture(scope="module")
def delivery_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    server = Server(tmp_path_factory.mktemp("delivery"), DELIVERY_ENV).start()
    yield server
    server.kill()


@pytest.fixture
def api(delivery_server: Server) -> Iterator[Api]:
    client = Api(delivery_server)
    yield client
    client.close()


def attempts(api: Api, webhook_id: str, **params: Any) -> dict[str, Any]:
    response = api.http.get(f"/v2/webhooks/{webhook_id}/attempts", params=params, headers=api.auth)
    assert response.status_code == 200, response.text
    data: dict[str, Any] = response.json()["data"]
    return data


def outcomes(api: Api, webhook_id: str, event_id: str) -> list[str]:
    """The outcomes of an event's attempts, oldest first."""
    listed = attempts(api, webhook_id, limit=500)["attempts"]
    return [a["outcome"] for a in reversed(listed) if a["event_id"] == event_id]


def test_events_are_posted_in_seq_order_and_pass_the_standardwebhooks_verifier(api: Api, receiver: Receiver) -> None:
    account = api.create_account()
    webhook = api.create_webhook(account, url=receiver.url + "/hook")
    assert webhook["mode"] == "custom"
    assert webhook["status"] == "healthy"
    assert webhook["secret"].startswith("whsec_")
    appended = api.ingest(account, *(message(n) for n in range(5)))
    wait_until(lambda: len(receiver.received()) >= 5, what="5 deliveries")
    verifier = Verifier(webhook["secret"])
    delivered = [verifier.verify(r.body, r.headers) for r in receiver.received()]
    assert [e["seq"] for e in delivered] == [a["seq"] for a in appended]
    assert [r.headers["webhook-id"] for r in receiver.received()] == [a["id"] for a in appended]
    # The body is the envelope exactly as the feed serves it.
    feed = api.poll(webhook["webhook_id"])["events"]
    assert delivered == feed
    assert receiver.received()[0].path == "/hook"
    assert receiver.received()[0].headers["content-type"] == "application/json"


def test_compressed_delivery_is_gzip_signed_over_the_compressed_bytes(api: Api, receiver: Receiver) -> None:
    account = api.create_account()
    webhook = api.create_webhook(account, url=receiver.url, compressed_delivery=True)
    assert webhook["compressed_delivery"] is True
    (appended,) = api.ingest(account, message(1))
    (request,) = wait_until(receiver.received, what="a delivery")
    assert request.headers["content-encoding"] == "gzip"
    # The standardwebhooks verifier decodes the body as text, so gzip bytes are checked by hand.
    key = base64.b64decode(webhook["secret"].removeprefix("whsec_"))
    signed = f"{request.headers['webhook-id']}.{request.headers['webhook-timestamp']}.".encode() + request.body
    expected = "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    assert request.headers["webhook-signature"] == expected
    envelope = orjson.loads(gzip.decompress(request.body))
    assert (envelope["id"], envelope["seq"]) == (appended["id"], appended["seq"])


def test_a_500_is_retried_on_the_schedule_until_acknowledged(api: Api, receiver: Receiver) -> None:
    receiver.script = [500, 503]
    account = api.create_account()
    webhook = api.create_webhook(account, url=receiver.url)
    (appended,) = api.ingest(account, message(1))
    wait_until(lambda: receiver.event_ids(200), what="the third attempt")
    assert [r.status for r in receiver.received()] == [500, 503, 200]
    assert {r.headers["webhook-id"] for r in receiver.received()} == {appended["id"]}
    # The receiver has answered; the attempt is recorded just after.
    wait_until(lambda: len(attempts(api, webhook["webhook_id"])["attempts"]) == 3, what="the third attempt recorded")
    listed = attempts(api, webhook["webhook_id"])["attempts"]
    assert [(a["attempt"], a["outcome"], a["status_code"]) for a in listed] == [
        (3, "delivered", 200),
        (2, "retrying", 503),
        (1, "retrying", 500),
    ]
    assert listed[2]["error"] == "HTTP 500"
    assert listed[0]["seq"] == appended["seq"]
    assert listed[0]["latency_ms"] >= 0
    assert listed[0]["created_at"].endswith("Z")


def test_a_receiver_that_hangs_past_the_timeout_is_retried(api: Api, receiver: Receiver) -> None:
    receiver.script = ["hang"]
    account = api.create_account()
    webhook = api.create_webhook(account, url=receiver.url)
    (appended,) = api.ingest(account, message(1))
    wait_until(lambda: outcomes(api, webhook["webhook_id"], appended["id"]) == ["retrying", "delivered"])
    first = attempts(api, webhook["webhook_id"])["attempts"][-1]
    assert first["status_code"] is None
    assert "timed out" in first["error"]


def test_a_failing_event_does_not_hold_back_later_events(api: Api, receiver: Receiver) -> None:
    receiver.script = [500]
    account = api.create_account()
    webhook = api.create_webhook(account, url=receiver.url)
    appended = api.ingest(account, message(1), message(2), message(3))
    ids = [a["id"] for a in appended]
    wait_until(lambda: len(receiver.event_ids()) == 3, what="all three acknowledged")
    first_attempts = list(dict.fromkeys(r.headers["webhook-id"] for r in receiver.received()))
    assert first_attempts == ids, "first attempts go out in seq order"
    assert receiver.event_ids()[-1] == ids[0], "the failed event is retried after the later ones went through"
    assert outcomes(api, webhook["webhook_id"], ids[0]) == ["retrying", "delivered"]


def test_an_exhausted_event_is_marked_failed_stays_in_the_feed_and_recover_resends_it(
    api: Api, receiver: Receiver
) -> None:
    receiver.default = 500
    account = api.create_account()
    webhook = api.create_webhook(account, url=receiver.url)
    (appended,) = api.ingest(account, message(1))
    wait_until(lambda: outcomes(api, webhook["webhook_id"], appended["id"]) == ["retrying", "retrying", "failed"])
    assert [e["id"] for e in api.poll(webhook["webhook_id"])["events"]] == [appended["id"]]
    receiver.default = 200
    response = api.http.post(
        f"/v2/webhooks/{webhook['webhook_id']}/recover", json={"afterSeq": appended["seq"] - 1}, headers=api.auth
    )
    assert response.status_code == 200, response.text
    assert response.json()["data"]["after_seq"] == appended["seq"] - 1
    assert wait_until(lambda: receiver.event_ids(200), what="the recovered event") == [appended["id"]]


def test_recover_sends_the_feed_again_after_the_given_seq(api: Api, receiver: Receiver) -> None:
    account = api.create_account()
    webhook = api.create_webhook(account, url=receiver.url)
    appended = api.ingest(account, message(1), message(2), message(3))
    wait_until(lambda: len(receiver.event_ids()) == 3)
    api.http.post(
        f"/v2/webhooks/{webhook['webhook_id']}/recover", json={"afterSeq": appended[0]["seq"]}, headers=api.auth
    )
    wait_until(lambda: len(receiver.event_ids()) == 5, what="two events again")
    assert receiver.event_ids()[3:] == [appended[1]["id"], appended[2]["id"]]


def test_recover_refuses_bad_input(api: Api, receiver: Receiver) -> None:
    account = api.create_account()
    custom = api.create_webhook(account, url=receiver.url)["webhook_id"]
    hosted = api.create_webhook(account)["webhook_id"]
    cases = [
        (custom, {}, 400),
        (custom, {"afterSeq": -1}, 400),
        (custom, {"afterSeq": "3"}, 400),
        (custom, {"afterSeq": True}, 400),
        (custom, {"afterSeq": 10**12}, 409),
        (hosted, {"afterSeq": 0}, 400),
        ("0" * 24, {"afterSeq": 0}, 404),
    ]
    for webhook_id, body, status in cases:
        response = api.http.post(f"/v2/webhooks/{webhook_id}/recover", json=body, headers=api.auth)
        assert response.status_code == status, (body, response.text)
    response = api.http.get(f"/v2/webhooks/{custom}/attempts?limit=0", headers=api.auth)
    assert response.status_code == 400
    assert response.json()["error"]["field"] == "limit"


def test_rotate_secret_with_no_overlap_applies_to_the_next_attempt_alone(api: Api, receiver: Receiver) -> None:
    receiver.script = [500]
    account = api.create_account()
    webhook = api.create_webhook(account, url=receiver.url)
    old_secret = webhook["secret"]
    api.ingest(account, message(1))
    wait_until(receiver.received, what="the first attempt")
    response = api.http.post(
        f"/v2/webhooks/{webhook['webhook_id']}/rotate-secret", json={"overlap": "0s"}, headers=api.auth
    )
    assert response.json()["data"]["previous_expires_at"] is None
    new_secret = response.json()["data"]["secret"]
    assert new_secret != old_secret
    retry = wait_until(lambda: receiver.received(200), what="the retry")[0]
    assert retry.headers["webhook-signature"].count("v1,") == 1
    Verifier(new_secret).verify(retry.body, retry.headers)
    with pytest.raises(WebhookVerificationError):
        Verifier(old_secret).verify(retry.body, retry.headers)


def test_attempts_are_listed_newest_first_page_by_page(api: Api, receiver: Receiver) -> None:
    account = api.create_account()
    webhook = api.create_webhook(account, url=receiver.url)
    appended = api.ingest(account, *(message(n) for n in range(5)))
    wait_until(lambda: len(receiver.received()) == 5)
    wait_until(lambda: len(attempts(api, webhook["webhook_id"])["attempts"]) == 5)
    seen: list[int] = []
    params: dict[str, Any] = {"limit": 2}
    while True:
        page = attempts(api, webhook["webhook_id"], **params)
        seen.extend(a["seq"] for a in page["attempts"])
        if not page["has_more"]:
            break
        params["before"] = page["next_before"]
    assert seen == [a["seq"] for a in reversed(appended)]


def test_a_redirect_is_not_followed(api: Api, receiver: Receiver) -> None:
    receiver.script = [302]
    account = api.create_account()
    webhook = api.create_webhook(account, url=receiver.url + "/hook")
    (appended,) = api.ingest(account, message(1))
    wait_until(lambda: outcomes(api, webhook["webhook_id"], appended["id"]) == ["retrying", "delivered"])
    assert [r.path for r in receiver.received()] == ["/hook", "/hook"]
    assert "redirect" in attempts(api, webhook["webhook_id"])["attempts"][-1]["error"]


def test_the_test_event_is_delivered_at_once_and_reports_the_outcome(api: Api, receiver: Receiver) -> None:
    account = api.create_account()
    webhook = api.create_webhook(account, url=receiver.url)
    response = api.http.post(f"/v2/webhooks/{webhook['webhook_id']}/test", headers=api.auth)
    assert response.status_code == 200, response.text
    result = response.json()["data"]
    assert result["status_code"] == 200
    assert result["ok"] is True
    assert result["latency_ms"] >= 0
    (request,) = receiver.received()
    assert Verifier(webhook["secret"]).verify(request.body, request.headers)["type"] == "webhook.test"
    receiver.default = 500
    failed = api.http.post(f"/v2/webhooks/{webhook['webhook_id']}/test", headers=api.auth).json()["data"]
    assert (failed["status_code"], failed["ok"]) == (500, False)


class BreakerScene:
    """A custom webhook whose receiver fails, on a server whose delivery clock the test moves,
    and a hosted webhook that watches the account's breaker events."""

    def __init__(self, start_server: Callable[..., Server], tmp_path: Path) -> None:
        self.clock = tmp_path / "clock"
        self.now = time.time()
        self.at(0)
        server = start_server(
            env={
                **DELIVERY_ENV,
                "HOOKSTREAM_RETRY_SCHEDULE": "1h",
                "HOOKSTREAM_BREAKER_MIN_ATTEMPTS": "3",
                "HOOKSTREAM_TEST_CLOCK_FILE": str(self.clock),
            }
        )
        self.receiver = Receiver(default=500)
        self.api = Api(server)
        self.account = self.api.create_account()
        events = ["webhook.failing", "webhook.failed"]
        self.watcher = self.api.create_webhook(self.account, events=events)["webhook_id"]
        webhook = self.api.create_webhook(self.account, url=self.receiver.url, events=["message_received"])
        self.webhook_id = webhook["webhook_id"]
        self.hook_url = f"/v2/webhooks/{self.webhook_id}"

    def at(self, seconds_later: float) -> None:
        """Set the delivery clock this many seconds after the scene began."""
        self.clock.write_text(f"{self.now + seconds_later:.6f}")

    def status(self) -> tuple[str, bool]:
        data = self.api.http.get(self.hook_url, headers=self.api.auth).json()["data"]
        return data["status"], data["is_active"]

    def close(self) -> None:
        self.api.close()
        self.receiver.close()


@pytest.fixture
def breaker(start_server: Callable[..., Server], tmp_path: Path) -> Iterator[BreakerScene]:
    scene = BreakerScene(start_server, tmp_path)
    yield scene
    scene.close()


def test_the_breaker_marks_failing_then_failed_and_start_restarts(breaker: BreakerScene) -> None:
    api, receiver, account, status = breaker.api, breaker.receiver, breaker.account, breaker.status
    api.ingest(account, message(1), message(2))
    wait_until(lambda: len(receiver.received()) == 2)
    time.sleep(0.3)
    assert status() == ("healthy", True), "below the minimum sample the breaker stays closed"
    api.ingest(account, message(3))
    wait_until(lambda: status() == ("failing", True), what="failing")
    (failing,) = api.poll(breaker.watcher)["events"]
    assert failing["type"] == "webhook.failing"
    assert failing["data"]["webhook_id"] == breaker.webhook_id

    breaker.at(73 * 3600)
    api.ingest(account, message(4))
    wait_until(lambda: status() == ("failed", False), what="failed")
    assert [e["type"] for e in api.poll(breaker.watcher)["events"]] == ["webhook.failing", "webhook.failed"]
    received = len(receiver.received())
    api.ingest(account, message(5))  # the watcher keeps the account monitored
    time.sleep(0.5)
    assert len(receiver.received()) == received, "a failed webhook is stopped"

    receiver.default = 200
    started = api.http.post(breaker.hook_url + "/start", headers=api.auth).json()["data"]
    assert (started["status"], started["is_active"]) == ("healthy", True)
    (appended,) = api.ingest(account, message(6))
    wait_until(lambda: appended["id"] in receiver.event_ids(), what="delivery after start")
    assert status() == ("healthy", True)


def test_after_start_the_breaker_counts_only_attempts_made_since(breaker: BreakerScene) -> None:
    api, receiver, account, status = breaker.api, breaker.receiver, breaker.account, breaker.status
    api.ingest(account, message(1), message(2), message(3))
    wait_until(lambda: status() == ("failing", True), what="failing")
    # 73 h on, the three retries and three new events fail inside the window: failed, and stopped.
    breaker.at(73 * 3600)
    api.ingest(account, message(4), message(5), message(6))
    wait_until(lambda: status() == ("failed", False), what="failed")
    assert len(receiver.received()) == 9

    # Started while the receiver still fails: the six failures in the window are history,
    # so one new failure is below the minimum sample and the webhook stays healthy.
    breaker.at(73 * 3600 + 60)
    assert api.http.post(breaker.hook_url + "/start", headers=api.auth).json()["data"]["status"] == "healthy"
    api.ingest(account, message(7))
    wait_until(lambda: len(receiver.received()) == 10, what="the attempt after start")
    time.sleep(0.5)
    assert status() == ("healthy", True)
    assert [e["type"] for e in api.poll(breaker.watcher)["events"]] == ["webhook.failing", "webhook.failed"]

    # Three failures since the start make the minimum sample again: failing, a second time.
    api.ingest(account, message(8), message(9))
    wait_until(lambda: status() == ("failing", True), what="failing again")
    types = [e["type"] for e in api.poll(breaker.watcher)["events"]]
    assert types == ["webhook.failing", "webhook.failed", "webhook.failing"]


def test_kill_9_during_delivery_loses_no_acknowledged_event(start_server, tmp_path: Path) -> None:
    receiver = Receiver(default="hang")
    # The first 30 are acknowledged, then a request hangs: the kill lands while it is in flight.
    receiver.script = [200] * 30
    server = start_server(env=DELIVERY_ENV)
    api = Api(server)
    try:
        account = api.create_account()
        api.create_webhook(account, url=receiver.url)
        acknowledged = [a["id"] for a in api.ingest(account, *(message(n) for n in range(100)))]
        wait_until(lambda: receiver.arrivals > 30, what="a delivery in flight")
        server.kill()
        receiver.default = 200
        server.start()
        api.close()
        api = Api(server, api.api_key)
        acknowledged += [a["id"] for a in api.ingest(account, *(message(n) for n in range(100, 120)))]
        wait_until(lambda: set(acknowledged) <= set(receiver.event_ids()), timeout=60, what="every event")
        assert len(receiver.event_ids()) >= len(acknowledged)
    finally:
        api.close()
        receiver.close()


def test_two_processes_on_one_database_deliver_each_event_once_and_the_survivor_takes_over(
    start_server: Callable[..., Server], receiver: Receiver, tmp_path: Path
) -> None:
    env = {**DELIVERY_ENV, "HOOKSTREAM_CHECKPOINT_INTERVAL": "200ms"}
    first = start_server(env)
    second = start_server(env)
    api = Api(first)
    other = Api(second, api.api_key)
    try:
        account = api.create_account()
        api.create_webhook(account, url=receiver.url + "/hook")
        sent = [a["id"] for a in api.ingest(account, *(message(n) for n in range(10)))]
        sent += [a["id"] for a in other.ingest(account, *(message(n) for n in range(10, 20)))]
        wait_until(lambda: len(receiver.received()) >= 20, what="20 deliveries")
        time.sleep(1.0)  # room for a duplicate from the other process to show up
        assert receiver.event_ids() == sent, "each event once, in seq order, from one process"

        first.kill()
        later = [a["id"] for a in other.ingest(account, *(message(n) for n in range(20, 25)))]
        wait_until(lambda: len(receiver.received()) >= 25, what="deliveries after the takeover")
        assert receiver.event_ids()[20:] == later
    finally:
        api.close()
        other.close()
