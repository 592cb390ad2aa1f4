"""Per-key rate limits (SPEC §11): 429 `rate_limited` with Retry-After, and one key's flood never slows another."""

from __future__ import annotations

import statistics
import threading
import time
from collections.abc import Callable

import httpx

from tests.server import Api, Server


def assert_rate_limited(response: httpx.Response, *, at_least: int = 1, at_most: int = 1) -> None:
    assert response.status_code == 429, response.text
    assert response.json()["error"]["code"] == "rate_limited"
    retry_after = response.headers["retry-after"]
    assert retry_after.isdigit(), retry_after
    assert at_least <= int(retry_after) <= at_most


def test_past_its_limit_a_key_gets_429_with_the_seconds_until_its_next_request(
    start_server: Callable[..., Server], connect: Callable[..., Api]
) -> None:
    server = start_server({"HOOKSTREAM_RATE_LIMIT": "3/m"})
    api = connect(server)
    for _ in range(3):
        assert api.http.get("/v2/accounts", headers=api.auth).status_code == 200
    # The bucket refills at one request per 20 s: the next one is about 20 s away.
    refused = api.http.get("/v2/accounts", headers=api.auth)
    assert_rate_limited(refused, at_least=19, at_most=20)
    assert "3 requests per minute" in refused.json()["error"]["message"]
    # Every customer route counts, polling included; an unknown key is a 401, not a 429.
    assert_rate_limited(api.http.get("/v2/webhooks/" + "0" * 24 + "/events", headers=api.auth), at_least=19, at_most=20)
    assert api.http.get("/v2/accounts", headers={"x-api-key": "hk_unknown"}).status_code == 401
    # Operators are not customers: admin routes have no per-key limit.
    for _ in range(5):
        assert api.http.get("/v2/admin/api-keys", headers=api.admin).status_code == 200


def test_an_open_stream_counts_once_at_connect(
    start_server: Callable[..., Server], connect: Callable[..., Api]
) -> None:
    server = start_server({"HOOKSTREAM_RATE_LIMIT": "4/m", "HOOKSTREAM_HEARTBEAT_SECONDS": "0.2"})
    api = connect(server)
    account = api.create_account()  # 1
    webhook = api.create_webhook(account)["webhook_id"]  # 2
    with api.http.stream("GET", f"/v2/webhooks/{webhook}/stream", headers=api.auth) as stream:  # 3
        assert stream.status_code == 200
        lines = stream.iter_lines()
        pings = 0
        while pings < 5:  # a second of heartbeats, well past any per-request accounting
            pings += next(lines) == ": ping"
        assert api.http.get("/v2/accounts", headers=api.auth).status_code == 200  # 4
        assert_rate_limited(api.http.get("/v2/accounts", headers=api.auth), at_least=14, at_most=15)


def test_one_keys_flood_does_not_slow_another_key(
    start_server: Callable[..., Server], connect: Callable[..., Api]
) -> None:
    server = start_server({"HOOKSTREAM_RATE_LIMIT": "20/s"})
    flooder, neighbour = connect(server), connect(server)
    webhook = neighbour.create_webhook(neighbour.create_account())["webhook_id"]
    time.sleep(1.1)  # the neighbour's setup calls are refilled

    def timed_poll(http: httpx.Client) -> tuple[int, float]:
        started = time.perf_counter()
        response = http.get(f"/v2/webhooks/{webhook}/events", params={"afterSeq": 0}, headers=neighbour.auth)
        return response.status_code, time.perf_counter() - started

    with httpx.Client(base_url=server.url, timeout=30) as http:
        quiet = [timed_poll(http)[1] for _ in range(20)]
        time.sleep(1.1)
        statuses: list[int] = []
        stop = threading.Event()

        def flood() -> None:
            with httpx.Client(base_url=server.url, timeout=30) as own:
                while not stop.is_set():
                    statuses.append(own.get("/v2/accounts", headers=flooder.auth).status_code)

        threads = [threading.Thread(target=flood) for _ in range(4)]
        for thread in threads:
            thread.start()
        try:
            time.sleep(0.5)
            started = time.monotonic()
            during: list[tuple[int, float]] = []
            # The neighbour stays under its own limit: 10 requests a second for 2 s.
            for _ in range(20):
                during.append(timed_poll(http))
                time.sleep(0.1)
            flood_seconds = time.monotonic() - started + 0.5
        finally:
            stop.set()
            for thread in threads:
                thread.join()
    assert [status for status, _ in during] == [200] * 20
    allowed = statuses.count(200)
    assert statuses.count(429) > 5 * allowed, (allowed, len(statuses))
    # At most the burst plus the refill over the flood (and a second of slack).
    assert allowed <= 20 + 20 * (flood_seconds + 1)
    assert set(statuses) == {200, 429}
    assert statistics.median(t for _, t in during) < 3 * statistics.median(quiet) + 0.02, (quiet, during)
    assert max(t for _, t in during) < 0.5


def test_ingest_is_limited_per_account(start_server: Callable[..., Server], connect: Callable[..., Api]) -> None:
    server = start_server({"HOOKSTREAM_INGEST_RATE_LIMIT": "2/m"})
    api = connect(server)
    busy, other = api.create_account(), api.create_account()
    for account in (busy, other):
        api.create_webhook(account)
    event = {"type": "message.new", "data": {"id": "m"}}
    api.ingest(busy, event)
    api.ingest(busy, event)
    refused = api.http.post(f"/v2/accounts/{busy}/events", json=event, headers=api.admin)
    assert_rate_limited(refused, at_least=29, at_most=30)
    # Nothing of the refused call was stored.
    webhooks = api.http.get("/v2/webhooks", params={"account_id": busy}, headers=api.auth).json()["data"]
    assert len(api.feed(webhooks[0]["webhook_id"])) == 2
    # Another account's ingest is untouched, and customers' calls have no limit here.
    api.ingest(other, event)
    api.ingest(other, event)
    for _ in range(10):
        assert api.http.get("/v2/accounts", headers=api.auth).status_code == 200
