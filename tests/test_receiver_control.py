"""Receivers steer custom-mode delivery (SPEC §8.1): Retry-After, 410, rotation overlap, Ed25519,
max_rate, strict ordering, and what did not arrive. Real receivers on 127.0.0.1, a real server."""

from __future__ import annotations

import base64
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from standardwebhooks import Webhook as Verifier
from standardwebhooks.webhooks import WebhookVerificationError

from tests.receiver import Answer, Received, Receiver, Reply, wait_until
from tests.server import Api, Server, message

CONTROL_ENV = {
    "HOOKSTREAM_ALLOW_HTTP": "1",
    "HOOKSTREAM_ALLOW_PRIVATE_URLS": "1",
    "HOOKSTREAM_RETRY_SCHEDULE": "200ms,200ms,200ms",
    "HOOKSTREAM_DELIVERY_TIMEOUT": "2s",
    "HOOKSTREAM_RETRY_AFTER_MAX": "3s",
}


@pytest.fixture(scope="module")
def control_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    server = Server(tmp_path_factory.mktemp("control"), CONTROL_ENV).start()
    yield server
    server.kill()


@pytest.fixture
def api(control_server: Server) -> Iterator[Api]:
    client = Api(control_server)
    yield client
    client.close()


def hook(api: Api, webhook_id: str) -> dict[str, Any]:
    response = api.http.get(f"/v2/webhooks/{webhook_id}", headers=api.auth)
    assert response.status_code == 200, response.text
    data: dict[str, Any] = response.json()["data"]
    return data


def attempts(api: Api, webhook_id: str, **params: Any) -> list[dict[str, Any]]:
    response = api.http.get(f"/v2/webhooks/{webhook_id}/attempts", params=params, headers=api.auth)
    assert response.status_code == 200, response.text
    listed: list[dict[str, Any]] = response.json()["data"]["attempts"]
    return listed


def seq_of(request: Received) -> int:
    return int(request.headers["webhook-seq"])


def assert_refused(response: Any, field: str) -> None:
    assert response.status_code == 400, response.text
    assert response.json()["error"]["field"] == field, response.text


# Retry-After


@pytest.mark.parametrize(
    ("retry_after", "at_least", "at_most"),
    [
        pytest.param(lambda: "1", 0.95, 2.5, id="delta-seconds"),
        # An HTTP-date has whole seconds: 3 s ahead names a time 2 to 3 s away.
        pytest.param(
            lambda: format_datetime(datetime.now(UTC) + timedelta(seconds=3), usegmt=True), 1.9, 4.0, id="date"
        ),
        pytest.param(lambda: "3600", 2.9, 4.5, id="capped-at-the-maximum"),
        # Asking for less than the schedule's own delay: the schedule's (200 ms × [0.8, 1.2]) applies.
        pytest.param(lambda: "0", 0.15, 1.5, id="shorter-than-the-schedule"),
    ],
)
@pytest.mark.parametrize("status", [429, 503])
def test_retry_after_on_429_and_503_sets_the_earliest_next_attempt_and_is_recorded(
    api: Api, receiver: Receiver, status: int, retry_after: Any, at_least: float, at_most: float
) -> None:
    receiver.script = [Answer(status, {"retry-after": retry_after()})]
    account = api.create_account()
    webhook = api.create_webhook(account, url=receiver.url)
    api.ingest(account, message(1))
    first, second = wait_until(lambda: len(receiver.received()) >= 2 and receiver.received(), what="the retry")[:2]
    assert (first.status, second.status) == (status, 200)
    assert at_least <= second.at - first.at <= at_most
    wait_until(lambda: len(attempts(api, webhook["webhook_id"])) == 2, what="both attempts recorded")
    retrying = attempts(api, webhook["webhook_id"], outcome="pending")[0]
    assert retrying["status_code"] == status
    assert retrying["retry_after"] is not None and retrying["next_attempt_at"] is not None
    assert retrying["next_attempt_at"] >= retrying["retry_after"]


def test_retry_after_on_a_500_is_not_honoured(api: Api, receiver: Receiver) -> None:
    receiver.script = [Answer(500, {"retry-after": "3600"})]
    account = api.create_account()
    webhook = api.create_webhook(account, url=receiver.url)
    api.ingest(account, message(1))
    first, second = wait_until(lambda: len(receiver.received()) >= 2 and receiver.received(), what="the retry")[:2]
    assert second.at - first.at < 1.5
    wait_until(lambda: attempts(api, webhook["webhook_id"], outcome="pending"), what="the attempt recorded")
    assert attempts(api, webhook["webhook_id"], outcome="pending")[0]["retry_after"] is None


def test_a_slow_answer_within_the_timeout_is_one_delivery_and_its_latency_is_recorded(
    api: Api, receiver: Receiver
) -> None:
    receiver.default = Answer(200, delay=0.6)
    account = api.create_account()
    webhook = api.create_webhook(account, url=receiver.url)
    (appended,) = api.ingest(account, message(1))
    wait_until(lambda: attempts(api, webhook["webhook_id"]), what="the attempt recorded")
    (attempt,) = attempts(api, webhook["webhook_id"])
    assert (attempt["outcome"], attempt["status_code"]) == ("delivered", 200)
    assert attempt["latency_ms"] >= 600 and attempt["next_attempt_at"] is None
    time.sleep(0.5)
    assert receiver.event_ids() == [appended["id"]]


# 410 Gone


def test_a_410_disables_the_webhook_at_once_and_start_delivers_what_waited(api: Api, receiver: Receiver) -> None:
    receiver.script = [410]
    account = api.create_account()
    watcher = api.create_webhook(account, events=["webhook.disabled"])["webhook_id"]
    webhook = api.create_webhook(account, url=receiver.url, events=["message_received"])
    webhook_id = webhook["webhook_id"]
    (gone,) = api.ingest(account, message(1))
    wait_until(lambda: hook(api, webhook_id)["status"] == "disabled", what="disabled")
    assert hook(api, webhook_id)["is_active"] is False
    (disabled,) = api.poll(watcher)["events"]
    assert disabled["type"] == "webhook.disabled"
    assert disabled["data"]["webhook_id"] == webhook_id and "410" in disabled["data"]["reason"]
    # Nothing more is attempted: not the retry, not new events.
    time.sleep(1.0)
    assert receiver.arrivals == 1
    response = api.http.post(f"/v2/webhooks/{webhook_id}/start", headers=api.auth)
    assert response.status_code == 200
    assert (response.json()["data"]["status"], response.json()["data"]["is_active"]) == ("healthy", True)
    (later,) = api.ingest(account, message(2))
    wait_until(lambda: len(receiver.received(200)) == 2, what="both delivered after start")
    assert receiver.event_ids() == [gone["id"], later["id"]]


def test_a_410_to_the_test_event_disables_the_webhook_too(api: Api, receiver: Receiver) -> None:
    receiver.script = [410]
    account = api.create_account()
    watcher = api.create_webhook(account, events=["webhook.disabled"])["webhook_id"]
    webhook_id = api.create_webhook(account, url=receiver.url, events=["message_received"])["webhook_id"]
    response = api.http.post(f"/v2/webhooks/{webhook_id}/test", headers=api.auth)
    assert response.status_code == 200, response.text
    answer = response.json()["data"]
    assert (answer["status_code"], answer["ok"]) == (410, False)
    assert "disabled" in answer["error"]
    assert (hook(api, webhook_id)["status"], hook(api, webhook_id)["is_active"]) == ("disabled", False)
    (disabled,) = api.poll(watcher)["events"]
    assert disabled["type"] == "webhook.disabled" and "test event" in disabled["data"]["reason"]
    api.ingest(account, message(1))
    time.sleep(0.5)
    assert receiver.arrivals == 1, "nothing is sent to a disabled webhook"


# Rotation with an overlap, HMAC and Ed25519


def test_during_the_overlap_both_secrets_sign_new_first_across_a_restart(tmp_path: Path) -> None:
    receiver = Receiver()
    server = Server(tmp_path, CONTROL_ENV).start()
    api = Api(server)
    try:
        account = api.create_account()
        webhook = api.create_webhook(account, url=receiver.url)
        old = webhook["secret"]
        before = time.time()
        response = api.http.post(f"/v2/webhooks/{webhook['webhook_id']}/rotate-secret", headers=api.auth)
        assert response.status_code == 200, response.text
        rotated = response.json()["data"]
        new = rotated["secret"]
        expires = datetime.fromisoformat(rotated["previous_expires_at"]).timestamp()
        assert before + 24 * 3600 - 5 <= expires <= time.time() + 24 * 3600 + 5
        api.ingest(account, message(1))
        wait_until(receiver.received, what="a delivery during the overlap")
        api.close()
        server.stop()
        server = Server(tmp_path, CONTROL_ENV).start()
        api = Api(server, api.api_key)
        api.ingest(account, message(2))
        wait_until(lambda: len(receiver.received()) == 2, what="a delivery after the restart")
        for delivered in receiver.received():
            new_signature, old_signature = delivered.headers["webhook-signature"].split(" ")
            assert new_signature.startswith("v1,") and old_signature.startswith("v1,")
            # A receiver holding either secret verifies it.
            Verifier(new).verify(delivered.body, delivered.headers)
            Verifier(old).verify(delivered.body, delivered.headers)
            only_new = {**delivered.headers, "webhook-signature": new_signature}
            Verifier(new).verify(delivered.body, only_new)
            with pytest.raises(WebhookVerificationError):
                Verifier(old).verify(delivered.body, only_new)
    finally:
        api.close()
        server.kill()
        receiver.close()


def verify_ed25519(public_key: str, delivered: Received, signature: str) -> None:
    """Check one v1a signature with the published public key only (raises InvalidSignature)."""
    assert public_key.startswith("whpk_") and signature.startswith("v1a,")
    key = Ed25519PublicKey.from_public_bytes(base64.b64decode(public_key.removeprefix("whpk_")))
    signed = f"{delivered.headers['webhook-id']}.{delivered.headers['webhook-timestamp']}.".encode() + delivered.body
    key.verify(base64.b64decode(signature.removeprefix("v1a,")), signed)


def test_an_ed25519_webhook_shows_its_public_key_never_a_secret_and_signs_v1a(api: Api, receiver: Receiver) -> None:
    account = api.create_account()
    webhook = api.create_webhook(account, url=receiver.url, signature_scheme="ed25519")
    assert webhook["signature_scheme"] == "ed25519" and "secret" not in webhook
    public_key = webhook["public_key"]
    assert len(base64.b64decode(public_key.removeprefix("whpk_"))) == 32
    shown = hook(api, webhook["webhook_id"])
    assert shown["public_key"] == public_key and "secret" not in shown
    listed = api.http.get("/v2/webhooks", headers=api.auth).json()["data"]
    assert all("secret" not in item and "whsk_" not in orjson.dumps(item).decode() for item in listed)
    api.ingest(account, message(1))
    (delivered,) = wait_until(receiver.received, what="a delivery")
    assert "whsk_" not in delivered.headers["webhook-signature"]
    verify_ed25519(public_key, delivered, delivered.headers["webhook-signature"])
    # A forged body does not verify.
    forged = Received(delivered.path, delivered.headers, delivered.body + b" ", delivered.status)
    with pytest.raises(InvalidSignature):
        verify_ed25519(public_key, forged, delivered.headers["webhook-signature"])

    response = api.http.post(f"/v2/webhooks/{webhook['webhook_id']}/rotate-secret", json={}, headers=api.auth)
    assert response.status_code == 200, response.text
    rotated = response.json()["data"]
    assert "secret" not in rotated and rotated["public_key"] != public_key
    assert rotated["previous_expires_at"] is not None
    api.ingest(account, message(2))
    wait_until(lambda: len(receiver.received()) == 2, what="a delivery after the rotation")
    after = receiver.received()[1]
    new_signature, old_signature = after.headers["webhook-signature"].split(" ")
    verify_ed25519(rotated["public_key"], after, new_signature)
    verify_ed25519(public_key, after, old_signature)
    with pytest.raises(InvalidSignature):
        verify_ed25519(public_key, after, new_signature)


# max_rate


def test_max_rate_spaces_deliveries_and_none_fails_or_is_dropped(api: Api, receiver: Receiver) -> None:
    account = api.create_account()
    webhook = api.create_webhook(account, url=receiver.url, max_rate=5)
    assert webhook["max_rate"] == 5
    appended = api.ingest(account, *(message(n) for n in range(15)))
    wait_until(lambda: len(receiver.received()) == 15, timeout=30, what="15 deliveries")
    times = [r.at for r in receiver.received()]
    # 15 sends 1/5 s apart span at least 14 × 0.2 s; no one-second window holds more than 5 (+1 at its edge).
    assert times[-1] - times[0] >= 2.6
    assert max(sum(1 for t in times if start <= t < start + 1.0) for start in times) <= 6
    assert receiver.event_ids() == [a["id"] for a in appended]
    wait_until(lambda: len(attempts(api, webhook["webhook_id"])) == 15, what="15 attempts recorded")
    assert {a["outcome"] for a in attempts(api, webhook["webhook_id"])} == {"delivered"}
    # Lifting the limit: the next burst goes at the receiver's pace.
    response = api.http.patch(f"/v2/webhooks/{webhook['webhook_id']}", json={"max_rate": None}, headers=api.auth)
    assert response.status_code == 200 and response.json()["data"]["max_rate"] is None
    api.ingest(account, *(message(n) for n in range(15, 30)))
    wait_until(lambda: len(receiver.received()) == 30, what="15 more deliveries")
    burst = [r.at for r in receiver.received()[15:]]
    assert burst[-1] - burst[0] < 2.0


# Strict ordering


def failing_seq(receiver: Receiver, seq: int, failures: int) -> None:
    """Make the receiver fail the event at `seq` `failures` times (500), then accept it; all else 200."""
    left = {"count": failures}

    def decide(headers: dict[str, str], body: bytes) -> Reply:
        if int(headers["webhook-seq"]) == seq and left["count"] > 0:
            left["count"] -= 1
            return 500
        return 200

    receiver.decide = decide


def test_strict_ordering_holds_later_events_until_the_failing_one_succeeds(api: Api, receiver: Receiver) -> None:
    account = api.create_account()
    webhook = api.create_webhook(account, url=receiver.url, ordering="strict")
    assert webhook["ordering"] == "strict"
    appended = api.ingest(account, message(0))
    failing_seq(receiver, appended[0]["seq"] + 1, failures=3)
    appended += api.ingest(account, *(message(n) for n in range(1, 6)))
    seqs = [a["seq"] for a in appended]
    wait_until(lambda: len(receiver.received(200)) == 6, what="all six delivered")
    assert [seq_of(r) for r in receiver.received()] == [seqs[0], *[seqs[1]] * 4, *seqs[2:]]
    assert [r.headers["webhook-seq"] for r in receiver.received(200)] == [str(s) for s in seqs]


def test_strict_ordering_moves_on_once_the_failing_event_exhausts_its_schedule(api: Api, receiver: Receiver) -> None:
    account = api.create_account()
    webhook = api.create_webhook(account, url=receiver.url, ordering="strict")
    appended = api.ingest(account, message(0))
    failing_seq(receiver, appended[0]["seq"] + 1, failures=100)
    appended += api.ingest(account, message(1), message(2))
    seqs = [a["seq"] for a in appended]
    wait_until(lambda: seqs[2] in [seq_of(r) for r in receiver.received(200)], what="the event after the failed one")
    # 1 + 3 attempts of the failing event (the schedule has 3 retries), then the next.
    assert [seq_of(r) for r in receiver.received()] == [seqs[0], *[seqs[1]] * 4, seqs[2]]
    wait_until(lambda: attempts(api, webhook["webhook_id"], outcome="failed"), what="the failed attempt recorded")
    (failed,) = attempts(api, webhook["webhook_id"], outcome="failed")
    assert failed["seq"] == seqs[1] and failed["attempt"] == 4


def test_switching_to_strict_retries_what_fast_left_pending_in_seq_order(api: Api, receiver: Receiver) -> None:
    account = api.create_account()
    webhook = api.create_webhook(account, url=receiver.url)
    first = api.ingest(account, message(0))[0]["seq"]
    asked = {first + 1: "2", first + 2: "1"}  # the earlier event is due later
    tried: set[int] = set()

    def decide(headers: dict[str, str], body: bytes) -> Reply:
        seq = int(headers["webhook-seq"])
        if seq in asked and seq not in tried:
            tried.add(seq)
            return Answer(503, {"retry-after": asked[seq]})
        return 200

    receiver.decide = decide
    early, late = (a["seq"] for a in api.ingest(account, message(1), message(2)))
    wait_until(lambda: len(attempts(api, webhook["webhook_id"], outcome="pending")) == 2, what="both pending")
    response = api.http.patch(f"/v2/webhooks/{webhook['webhook_id']}", json={"ordering": "strict"}, headers=api.auth)
    assert response.status_code == 200 and response.json()["data"]["ordering"] == "strict"
    wait_until(lambda: len(receiver.received(200)) == 3, what="both retried")
    assert [seq_of(r) for r in receiver.received(200)] == [first, early, late]


def test_fast_ordering_lets_later_events_pass_a_failing_one(api: Api, receiver: Receiver) -> None:
    account = api.create_account()
    api.create_webhook(account, url=receiver.url)
    appended = api.ingest(account, message(0))
    failing_seq(receiver, appended[0]["seq"] + 1, failures=1)
    appended += api.ingest(account, message(1), message(2))
    seqs = [a["seq"] for a in appended]
    wait_until(lambda: len(receiver.received(200)) == 3, what="all three delivered")
    assert [seq_of(r) for r in receiver.received()][:4] == [seqs[0], seqs[1], seqs[2], seqs[1]]


# What did not arrive


def test_undelivered_lists_pending_and_given_up_events_in_seq_order_page_by_page(api: Api, receiver: Receiver) -> None:
    account = api.create_account()
    webhook = api.create_webhook(account, url=receiver.url)
    webhook_id = webhook["webhook_id"]
    first = api.ingest(account, message(0))[0]["seq"]

    def decide(headers: dict[str, str], body: bytes) -> Reply:
        seq = int(headers["webhook-seq"])
        if seq == first + 1:
            return 500  # exhausts its schedule
        if seq == first + 2:
            return Answer(503, {"retry-after": "3"})  # pending, 3 s away
        return 200

    receiver.decide = decide
    appended = api.ingest(account, message(1), message(2), message(3))
    seqs = [first, *(a["seq"] for a in appended)]
    wait_until(lambda: attempts(api, webhook_id, outcome="failed"), what="the first event given up")
    response = api.http.get(f"/v2/webhooks/{webhook_id}/undelivered", headers=api.auth)
    assert response.status_code == 200, response.text
    data = response.json()["data"]
    assert [e["seq"] for e in data["events"]] == [seqs[1], seqs[2]]
    given_up, pending = data["events"]
    assert (given_up["attempts"], given_up["last_status_code"], given_up["next_attempt_at"]) == (4, 500, None)
    assert given_up["id"] == appended[0]["id"] and given_up["type"] == "message_received"
    assert (pending["attempts"], pending["last_status_code"]) == (1, 503)
    assert pending["next_attempt_at"] is not None
    assert data["has_more"] is False and data["next_after_seq"] is None
    page = api.http.get(f"/v2/webhooks/{webhook_id}/undelivered?limit=1", headers=api.auth).json()["data"]
    assert [e["seq"] for e in page["events"]] == [seqs[1]] and page["has_more"] is True
    rest = api.http.get(
        f"/v2/webhooks/{webhook_id}/undelivered", params={"afterSeq": page["next_after_seq"]}, headers=api.auth
    ).json()["data"]
    assert [e["seq"] for e in rest["events"]] == [seqs[2]]
    assert_refused(api.http.get(f"/v2/webhooks/{webhook_id}/undelivered?limit=0", headers=api.auth), "limit")
    assert_refused(api.http.get(f"/v2/webhooks/{webhook_id}/undelivered?afterSeq=x", headers=api.auth), "afterSeq")


def test_attempts_filter_by_outcome(api: Api, receiver: Receiver) -> None:
    receiver.script = [500]
    account = api.create_account()
    webhook = api.create_webhook(account, url=receiver.url)
    api.ingest(account, message(1))
    wait_until(lambda: len(attempts(api, webhook["webhook_id"])) == 2, what="two attempts")
    assert [a["outcome"] for a in attempts(api, webhook["webhook_id"], outcome="delivered")] == ["delivered"]
    assert [a["status_code"] for a in attempts(api, webhook["webhook_id"], outcome="pending")] == [500]
    assert attempts(api, webhook["webhook_id"], outcome="failed") == []
    response = api.http.get(f"/v2/webhooks/{webhook['webhook_id']}/attempts?outcome=retrying", headers=api.auth)
    assert_refused(response, "outcome")


def test_recover_since_resends_the_events_appended_from_then(api: Api, receiver: Receiver) -> None:
    account = api.create_account()
    webhook = api.create_webhook(account, url=receiver.url)
    url = f"/v2/webhooks/{webhook['webhook_id']}/recover"
    early = api.ingest(account, message(1), message(2))
    time.sleep(0.05)
    since = datetime.now(UTC).isoformat()
    time.sleep(0.05)
    late = api.ingest(account, message(3), message(4))
    wait_until(lambda: len(receiver.received()) == 4, what="four deliveries")
    response = api.http.post(url, json={"since": since}, headers=api.auth)
    assert response.status_code == 200, response.text
    assert response.json()["data"]["after_seq"] == early[-1]["seq"]
    wait_until(lambda: len(receiver.received()) == 6, what="the two later events again")
    assert receiver.event_ids()[4:] == [e["id"] for e in late]
    assert_refused(api.http.post(url, json={}, headers=api.auth), "afterSeq")
    assert_refused(api.http.post(url, json={"afterSeq": 0, "since": since}, headers=api.auth), "since")
    assert_refused(api.http.post(url, json={"since": "yesterday"}, headers=api.auth), "since")
    assert_refused(api.http.post(url, json={"since": 5}, headers=api.auth), "since")


# Validation


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"signature_scheme": "rsa"}, "signature_scheme"),
        ({"signature_scheme": None}, "signature_scheme"),
        ({"max_rate": 0}, "max_rate"),
        ({"max_rate": 10_001}, "max_rate"),
        ({"max_rate": "5"}, "max_rate"),
        ({"max_rate": True}, "max_rate"),
        ({"max_rate": 2.5}, "max_rate"),
        ({"ordering": "random"}, "ordering"),
        ({"ordering": 1}, "ordering"),
    ],
)
def test_new_fields_are_validated_at_create_and_update(
    api: Api, receiver: Receiver, fields: dict[str, Any], field: str
) -> None:
    account = api.create_account()
    body = {"account_id": account, "url": receiver.url, **fields}
    assert_refused(api.http.post("/v2/webhooks", json=body, headers=api.auth), field)
    if field != "signature_scheme":
        webhook = api.create_webhook(account, url=receiver.url)
        response = api.http.patch(f"/v2/webhooks/{webhook['webhook_id']}", json=fields, headers=api.auth)
        assert_refused(response, field)


def test_delivery_options_are_refused_on_hosted_webhooks_and_signature_scheme_is_fixed(
    api: Api, receiver: Receiver
) -> None:
    account = api.create_account()
    for fields in ({"max_rate": 5}, {"ordering": "strict"}, {"signature_scheme": "ed25519"}):
        body = {"account_id": account, **fields}
        assert_refused(api.http.post("/v2/webhooks", json=body, headers=api.auth), next(iter(fields)))
    hosted = api.create_webhook(account)
    response = api.http.patch(f"/v2/webhooks/{hosted['webhook_id']}", json={"max_rate": 5}, headers=api.auth)
    assert_refused(response, "max_rate")
    custom = api.create_webhook(account, url=receiver.url)
    assert (custom["signature_scheme"], custom["max_rate"], custom["ordering"]) == ("hmac-sha256", None, "fast")
    response = api.http.patch(
        f"/v2/webhooks/{custom['webhook_id']}", json={"signature_scheme": "ed25519"}, headers=api.auth
    )
    assert_refused(response, "signature_scheme")


@pytest.mark.parametrize("overlap", ["soon", "-1s", "31d", 5, None])
def test_rotate_secret_refuses_a_bad_overlap(api: Api, receiver: Receiver, overlap: object) -> None:
    account = api.create_account()
    webhook = api.create_webhook(account, url=receiver.url)
    url = f"/v2/webhooks/{webhook['webhook_id']}/rotate-secret"
    assert_refused(api.http.post(url, json={"overlap": overlap}, headers=api.auth), "overlap")
    assert hook(api, webhook["webhook_id"])["status"] == "healthy"


def test_the_openapi_document_describes_the_delivery_options_and_routes(api: Api) -> None:
    document = api.http.get("/openapi.json").json()
    webhook = document["components"]["schemas"]["Webhook"]["properties"]
    assert {"signature_scheme", "public_key", "max_rate", "ordering", "previous_expires_at"} <= set(webhook)
    assert "disabled" in webhook["status"]["enum"]
    create = document["paths"]["/v2/webhooks"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert {"signature_scheme", "max_rate", "ordering"} <= set(create["properties"])
    undelivered = document["paths"]["/v2/webhooks/{webhook_id}/undelivered"]["get"]
    assert {p["name"] for p in undelivered["parameters"]} == {"webhook_id", "afterSeq", "limit"}
    outcome = [p for p in document["paths"]["/v2/webhooks/{webhook_id}/attempts"]["get"]["parameters"]]
    assert {"enum": ["delivered", "failed", "pending"]} in [p["schema"] for p in outcome]
    rotate = document["paths"]["/v2/webhooks/{webhook_id}/rotate-secret"]["post"]["requestBody"]
    assert "overlap" in rotate["content"]["application/json"]["schema"]["properties"]
