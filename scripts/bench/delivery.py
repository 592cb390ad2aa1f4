"""Custom-mode delivery: deliveries/s to a local receiver vs a bare httpx client, and ingest→receiver latency."""

from __future__ import annotations

import asyncio
import http.client
import time
import uuid

import httpx
import orjson
import uvloop
from figures import Row, percentile
from logs import EVENT_TYPE, payload
from procs import ADMIN_TOKEN, PYTHON, ROOT, Service, hookstream, request
from workloads import CheckFailed, Plan

from app.envelopes import encode
from app.signing import new_secret, signed_request

WEBHOOKS = 100
# One process, one event loop: 100 deliveries in flight at once, to one receiver, on both sides.
CONCURRENCY = 100
DELIVERY_ENV = {
    "HOOKSTREAM_ALLOW_HTTP": "1",
    "HOOKSTREAM_ALLOW_PRIVATE_URLS": "1",
    "HOOKSTREAM_DELIVERY_CONCURRENCY": str(CONCURRENCY),
    "HOOKSTREAM_DELIVERY_CONCURRENCY_PER_ENDPOINT": str(CONCURRENCY),
    "HOOKSTREAM_RETENTION": "3650d",
}
LATENCY_RATE = 100.0


def receiver(plan: Plan) -> Service:
    """The 204 receiver (scripts/bench/anchors/receiver.py) as its own process."""
    return Service("receiver", [PYTHON, str(ROOT / "scripts/bench/anchors/receiver.py"), "{port}"], plan.workdir)


def _stats(port: int) -> dict[str, object]:
    status, body = request(port, "GET", "/stats")
    assert status == 200, body
    stats: dict[str, object] = orjson.loads(body)
    return stats


def _count(port: int) -> int:
    return int(_stats(port)["count"])  # type: ignore[call-overload]


def _tenant(port: int, receiver_url: str, webhooks: int) -> tuple[dict[str, str], str]:
    """A fresh API key and account with `webhooks` custom webhooks pointed at the receiver."""
    name = uuid.uuid4().hex[:10]
    admin = {"authorization": f"Bearer {ADMIN_TOKEN}", "content-type": "application/json"}
    status, body = request(port, "POST", "/v2/admin/api-keys", orjson.dumps({"name": name}), admin)
    assert status == 201, body
    auth = {"x-api-key": orjson.loads(body)["data"]["api_key"], "content-type": "application/json"}
    account = f"acc_{name}"
    status, body = request(port, "POST", "/v2/accounts", orjson.dumps({"account_id": account}), auth)
    assert status == 201, body
    for _ in range(webhooks):
        hook = {"account_id": account, "url": receiver_url}
        status, body = request(port, "POST", "/v2/webhooks", orjson.dumps(hook), auth)
        assert status == 201, body
    return auth, account


def _ingest(port: int, account: str, events: list[dict[str, object]]) -> list[int]:
    admin = {"authorization": f"Bearer {ADMIN_TOKEN}", "content-type": "application/json"}
    status, body = request(port, "POST", f"/v2/accounts/{account}/events", orjson.dumps({"events": events}), admin)
    if status != 201:
        raise CheckFailed(f"ingest answered {status}: {body[:200]!r}")
    return [e["seq"] for e in orjson.loads(body)["data"]["events"]]


def _wait_for(port: int, count: int, timeout: float) -> float:
    """Poll the receiver until it has `count` requests; the monotonic time it got there."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _count(port) >= count:
            return time.monotonic()
        time.sleep(0.005)
    raise CheckFailed(f"the receiver got {_count(port)} of {count} deliveries within {timeout:.0f}s")


def delivery(plan: Plan) -> list[Row]:
    """100 custom webhooks × N events to a receiver answering 204 at once, vs bare httpx posting the same."""
    events = 100 if plan.seconds <= 2 else 300
    total = WEBHOOKS * events
    row = Row(
        "delivery",
        f"deliveries/s to a local 204 receiver, {WEBHOOKS} webhooks × {events} events",
        "deliveries/s",
        f"bare httpx, same signed bodies, {CONCURRENCY} at once",
        "≥ 0.7",
        "higher",
        0.7,
    )
    data = [{"type": EVENT_TYPE, "data": payload(n, plan.message_bytes)} for n in range(events)]
    envelopes = [
        encode(f"evt_{n}", EVENT_TYPE, "acc_bench", "2025-01-15T12:00:00.000Z", orjson.dumps(d["data"])).envelope(n + 1)
        for n, d in enumerate(data)
    ]
    with receiver(plan) as sink, hookstream(plan.workdir, plan.workdir / "delivery.db", DELIVERY_ENV) as server:
        url = f"http://127.0.0.1:{sink.port}/hook"
        for _ in range(plan.runs):
            auth, account = _tenant(server.port, url, WEBHOOKS)
            before = _count(sink.port)
            cpu = server.cpu()
            started = time.monotonic()
            for first in range(0, events, 100):
                _ingest(server.port, account, data[first : first + 100])
            done = _wait_for(sink.port, before + total, timeout=300)
            server_share = (server.cpu() - cpu) / (done - started)
            time.sleep(0.2)
            if _count(sink.port) != before + total:
                raise CheckFailed(f"{_count(sink.port) - before} deliveries for {total} feed events: duplicates")
            row.ours.append(total / (done - started))
            # Stop this run's 100 workers so they do not poll during the next.
            status, _ = request(server.port, "DELETE", f"/v2/accounts/{account}", None, auth)
            assert status == 200
            before = _count(sink.port)
            # uvloop, as `hookstream serve` runs.
            seconds = uvloop.run(_bare(url, envelopes, WEBHOOKS))
            if _count(sink.port) != before + total:
                raise CheckFailed("the bare client's deliveries did not all arrive")
            row.theirs.append(total / seconds)
    row.notes.append(
        f"hookstream: ingest of {events} events (batches of 100) to the last delivery received, counted by the "
        f"receiver (exactly {total}, no duplicates); server CPU {server_share:.0%}; "
        f"HOOKSTREAM_DELIVERY_CONCURRENCY(_PER_ENDPOINT)={CONCURRENCY}; the bare client signs each request too"
    )
    return [row, _latency(plan)]


async def _bare(url: str, envelopes: list[bytes], webhooks: int) -> float:
    """POST every envelope once per webhook, signed, `CONCURRENCY` requests in flight; seconds taken."""
    secrets = [new_secret() for _ in range(webhooks)]
    jobs = iter([(secret, n, envelope) for n, envelope in enumerate(envelopes) for secret in secrets])
    limits = httpx.Limits(max_connections=CONCURRENCY, max_keepalive_connections=CONCURRENCY)
    async with httpx.AsyncClient(limits=limits, timeout=15, trust_env=False, follow_redirects=False) as client:

        async def worker() -> None:
            for secret, n, envelope in jobs:
                body, headers = signed_request([secret], f"evt_{n}", envelope, int(time.time()), compressed=False)
                headers["webhook-seq"] = str(n + 1)
                response = await client.post(url, content=body, headers=headers)
                if response.status_code != 204:
                    raise CheckFailed(f"the receiver answered {response.status_code}")

        started = time.monotonic()
        await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
        return time.monotonic() - started


def _latency(plan: Plan) -> Row:
    """One custom webhook; one event ingested every 10 ms; arrival minus the time its ingest was sent."""
    row = Row(
        "delivery-latency",
        f"p99 ingest→receiver latency at {LATENCY_RATE:.0f} events/s, 1 webhook",
        "ms",
        "-",
        "-",
        "none",
        0.0,
    )
    count = int(LATENCY_RATE * max(plan.seconds, 2.0))
    with receiver(plan) as sink, hookstream(plan.workdir, plan.workdir / "latency.db", DELIVERY_ENV) as server:
        url = f"http://127.0.0.1:{sink.port}/hook"
        p50s = []
        for _ in range(plan.runs):
            _, account = _tenant(server.port, url, 1)
            conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
            headers = {"authorization": f"Bearer {ADMIN_TOKEN}", "content-type": "application/json"}
            sent: dict[int, float] = {}
            start = time.monotonic()
            late = 0
            for n in range(count):
                due = start + n / LATENCY_RATE
                pause = due - time.monotonic()
                if pause > 0:
                    time.sleep(pause)
                else:
                    late += 1
                at = time.time()
                body = orjson.dumps({"type": EVENT_TYPE, "data": payload(n, plan.message_bytes)})
                conn.request("POST", f"/v2/accounts/{account}/events", body=body, headers=headers)
                response = conn.getresponse()
                answer = response.read()
                if response.status != 201:
                    raise CheckFailed(f"ingest answered {response.status}: {answer[:200]!r}")
                sent[orjson.loads(answer)["data"]["events"][0]["seq"]] = at
            conn.close()
            deadline = time.monotonic() + 30
            while True:
                arrivals = _stats(sink.port)["arrivals"]
                assert isinstance(arrivals, dict)
                if all(str(seq) in arrivals for seq in sent) or time.monotonic() > deadline:
                    break
                time.sleep(0.05)
            missing = [seq for seq in sent if str(seq) not in arrivals]
            if missing:
                raise CheckFailed(f"{len(missing)} of {len(sent)} events never reached the receiver")
            latencies = sorted(int((arrivals[str(seq)] - at) * 1_000_000) for seq, at in sent.items())
            row.ours.append(percentile(latencies, 0.99) / 1000)
            p50s.append(percentile(latencies, 0.5) / 1000)
    row.notes.append(
        f"{count} events per run, each its own ingest call, paced at {LATENCY_RATE:.0f}/s ({late} sent late in the "
        f"last run); p50 {sorted(p50s)[len(p50s) // 2]:.1f} ms; latency = receiver's arrival clock − the time the "
        "ingest request was sent (one machine, one clock)"
    )
    return row


WORKLOADS_DELIVERY = {"delivery": delivery}
