"""A crash (kill -9) in the middle of ingest loses no event that was answered 201 (SPEC §6)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import httpx

from tests.server import Api, Server

PRODUCERS = 8


def test_a_kill_9_mid_ingest_loses_no_acknowledged_event(start_server: Callable[..., Server]) -> None:
    server = start_server()
    api = Api(server)
    account = api.create_account()
    webhook = api.create_webhook(account)["webhook_id"]
    acknowledged: dict[str, int] = {}
    lock = threading.Lock()
    stop = threading.Event()
    started = threading.Barrier(PRODUCERS + 1)

    def produce(worker: int) -> None:
        started.wait()
        with httpx.Client(base_url=server.url, timeout=10) as http:
            batch = 0
            while not stop.is_set():
                body = {"events": [{"type": "message.new", "data": {"worker": worker, "i": i}} for i in range(5)]}
                batch += 1
                try:
                    response = http.post(f"/v2/accounts/{account}/events", json=body, headers=api.admin)
                except httpx.TransportError:
                    return  # the server died under us: this batch was never acknowledged
                if response.status_code == 201:
                    with lock:
                        acknowledged.update((e["id"], e["seq"]) for e in response.json()["data"]["events"])

    threads = [threading.Thread(target=produce, args=(worker,)) for worker in range(PRODUCERS)]
    for thread in threads:
        thread.start()
    started.wait()
    deadline = time.monotonic() + 30
    while len(acknowledged) < 500 and time.monotonic() < deadline:
        time.sleep(0.02)
    server.kill()
    stop.set()
    for thread in threads:
        thread.join(30)
    api.close()
    assert len(acknowledged) >= 500

    server.start()
    survivor = Api(server, api.api_key)
    stored = {event["id"]: event["seq"] for event in survivor.feed(webhook)}
    survivor.close()
    lost = {event_id for event_id in acknowledged if stored.get(event_id) != acknowledged[event_id]}
    assert not lost, f"{len(lost)} acknowledged events lost or moved"
    seqs = sorted(stored.values())
    assert len(seqs) == len(set(seqs))
