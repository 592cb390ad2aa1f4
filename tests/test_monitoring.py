"""The per-account monitor's lifecycle (SPEC §7), against a real server."""

from __future__ import annotations

import random
import threading
from collections.abc import Callable
from pathlib import Path

import httpx

from tests.monitoring import (
    account,
    eventually,
    intervals_never_overlap,
    monitor_env,
    open_intervals,
    usage,
    webhook_call,
)
from tests.server import Api, Server


def test_monitor_follows_every_webhook_lifecycle_transition(
    start_server: Callable[..., Server], connect: Callable[..., Api], tmp_path: Path
) -> None:
    api = connect(start_server(monitor_env(tmp_path)))
    account_id = api.create_account()
    assert account(api, account_id)["monitoring"] == "idle"
    assert usage(api, account_id)["intervals"] == []

    first = api.create_webhook(account_id)["webhook_id"]
    assert account(api, account_id)["monitoring"] == "running"
    assert len(open_intervals(api, account_id)) == 1

    second = api.create_webhook(account_id)["webhook_id"]
    webhook_call(api, first, "stop")
    assert account(api, account_id)["monitoring"] == "running"
    assert account(api, account_id)["active_webhooks"] == 1
    assert len(usage(api, account_id)["intervals"]) == 1, "stopping one of two webhooks keeps the same interval"

    webhook_call(api, second, "stop")
    assert account(api, account_id)["monitoring"] == "idle"
    assert open_intervals(api, account_id) == []

    webhook_call(api, first, "start")
    assert account(api, account_id)["monitoring"] == "running"
    assert len(open_intervals(api, account_id)) == 1

    assert api.http.delete(f"/v2/webhooks/{first}", headers=api.auth).status_code == 200
    assert account(api, account_id)["monitoring"] == "idle"
    webhook_call(api, second, "start")
    assert account(api, account_id)["monitoring"] == "running"

    assert api.http.delete(f"/v2/accounts/{account_id}", headers=api.auth).status_code == 200
    assert api.http.get(f"/v2/accounts/{account_id}", headers=api.auth).status_code == 404
    kept = usage(api, account_id)
    assert kept["monitoring"] == "idle"
    assert len(kept["intervals"]) == 3
    assert all(interval["stopped_at"] is not None for interval in kept["intervals"])
    assert intervals_never_overlap(kept["intervals"])
    stranger = connect(api.server)
    assert stranger.http.get(f"/v2/accounts/{account_id}/usage", headers=stranger.auth).status_code == 404


def test_concurrent_lifecycle_calls_leave_a_monitor_exactly_when_a_webhook_is_active(
    start_server: Callable[..., Server], connect: Callable[..., Api], tmp_path: Path
) -> None:
    api = connect(start_server(monitor_env(tmp_path)))
    account_id = api.create_account()
    hooks = [api.create_webhook(account_id)["webhook_id"] for _ in range(3)]
    lock = threading.Lock()
    errors: list[str] = []

    def hammer(seed: int) -> None:
        rng = random.Random(seed)
        with httpx.Client(base_url=api.server.url, headers=api.auth, timeout=30) as http:
            for _ in range(30):
                with lock:
                    webhook_id = rng.choice(hooks)
                action = rng.choice(["stop", "start", "stop", "start", "delete", "create"])
                if action == "create":
                    response = http.post("/v2/webhooks", json={"account_id": account_id})
                    if response.status_code == 201:
                        with lock:
                            hooks.append(response.json()["data"]["webhook_id"])
                elif action == "delete":
                    response = http.delete(f"/v2/webhooks/{webhook_id}")
                else:
                    response = http.post(f"/v2/webhooks/{webhook_id}/{action}")
                if response.status_code not in (200, 201, 404):
                    errors.append(f"{action}: {response.status_code} {response.text}")

    threads = [threading.Thread(target=hammer, args=(seed,)) for seed in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []

    state = account(api, account_id)
    expected = "running" if state["active_webhooks"] else "idle"
    assert state["monitoring"] == expected
    assert len(open_intervals(api, account_id)) == (1 if state["active_webhooks"] else 0)
    assert intervals_never_overlap(usage(api, account_id)["intervals"])

    for webhook in api.http.get("/v2/webhooks", params={"account_id": account_id}, headers=api.auth).json()["data"]:
        webhook_call(api, webhook["webhook_id"], "stop")
    assert account(api, account_id)["monitoring"] == "idle"
    assert open_intervals(api, account_id) == []


def test_graceful_restart_closes_the_interval_and_resumes_the_monitor(
    start_server: Callable[..., Server], connect: Callable[..., Api], tmp_path: Path
) -> None:
    server = start_server(monitor_env(tmp_path))
    api = connect(server)
    account_id = api.create_account(connector="tests.example_connector:EchoConnector")
    webhook_id = api.create_webhook(account_id)["webhook_id"]
    eventually(lambda: len(api.feed(webhook_id)) == 1)

    server.stop()
    assert "Application shutdown complete" in server.log()
    server.start()
    api = connect(server, api.api_key)
    intervals = eventually(
        lambda: len(usage(api, account_id)["intervals"]) == 2 and usage(api, account_id)["intervals"]
    )
    assert intervals[0]["stopped_at"] is not None
    assert intervals[1]["stopped_at"] is None
    assert intervals_never_overlap(intervals)
    assert account(api, account_id)["monitoring"] == "running"
    eventually(lambda: len(api.feed(webhook_id)) == 2)  # the connector runs again


def test_monitor_resumes_after_a_crash_once_the_dead_process_lease_expires(
    start_server: Callable[..., Server], connect: Callable[..., Api], tmp_path: Path
) -> None:
    server = start_server(monitor_env(tmp_path))
    api = connect(server)
    account_id = api.create_account(connector="tests.example_connector:EchoConnector")
    webhook_id = api.create_webhook(account_id)["webhook_id"]
    eventually(lambda: len(api.feed(webhook_id)) == 1)

    server.kill()
    server.start()
    api = connect(server, api.api_key)
    eventually(lambda: len(api.feed(webhook_id)) == 2)
    intervals = usage(api, account_id)["intervals"]
    assert len(intervals) == 2
    assert intervals[0]["stopped_at"] is not None, "the crashed interval is closed at its last checkpoint"
    assert intervals[1]["stopped_at"] is None
    assert intervals_never_overlap(intervals)
    assert account(api, account_id)["monitoring"] == "running"


def test_two_processes_on_one_database_run_one_monitor_and_the_survivor_takes_over(
    start_server: Callable[..., Server], connect: Callable[..., Api], tmp_path: Path
) -> None:
    first = start_server(monitor_env(tmp_path))
    second = start_server(monitor_env(tmp_path))
    api = connect(first)
    account_id = api.create_account(connector="tests.example_connector:EchoConnector")
    webhook_id = api.create_webhook(account_id)["webhook_id"]
    eventually(lambda: len(api.feed(webhook_id)) == 1)
    # The second process sweeps every checkpoint; it must stand by, not start a second connector.
    other = connect(second, api.api_key)
    eventually(lambda: account(other, account_id)["monitoring"] == "running")
    assert len(open_intervals(other, account_id)) == 1
    assert len(api.feed(webhook_id)) == 1

    first.kill()
    eventually(lambda: len(other.feed(webhook_id)) == 2)
    intervals = usage(other, account_id)["intervals"]
    assert [interval["stopped_at"] is None for interval in intervals] == [False, True]


def test_a_restart_after_a_crash_on_the_same_host_resumes_at_once_without_waiting_out_the_lease(
    start_server: Callable[..., Server], connect: Callable[..., Api], tmp_path: Path
) -> None:
    # A 30 s checkpoint makes the dead process's lease last 90 s: far longer than this test waits.
    server = start_server(monitor_env(tmp_path, HOOKSTREAM_CHECKPOINT_INTERVAL="30s"))
    api = connect(server)
    account_id = api.create_account(connector="tests.example_connector:EchoConnector")
    webhook_id = api.create_webhook(account_id)["webhook_id"]
    eventually(lambda: len(api.feed(webhook_id)) == 1)

    server.kill()
    server.start()
    api = connect(server, api.api_key)
    eventually(lambda: len(api.feed(webhook_id)) == 2, timeout=15)
    assert account(api, account_id)["monitoring"] == "running"
    assert [interval["stopped_at"] is None for interval in usage(api, account_id)["intervals"]] == [False, True]
