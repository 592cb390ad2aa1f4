"""Connectors (SPEC §7): built-in demo, a platform's own by import path, supervision, and `serve --demo`."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from tests.monitoring import account, eventually, monitor_env, webhook_call
from tests.server import ROOT, TEST_DATABASE, Api, Server, free_port

ECHO = "tests.example_connector:EchoConnector"


def test_custom_connector_loaded_by_import_path_emits_and_hears_filter_changes(
    start_server: Callable[..., Server], connect: Callable[..., Api], tmp_path: Path
) -> None:
    api = connect(start_server(monitor_env(tmp_path)))
    account_id = api.create_account(connector=ECHO)
    assert account(api, account_id)["connector"] == ECHO
    first = api.create_webhook(account_id, events=["message_received"])["webhook_id"]
    events = eventually(lambda: api.feed(first))
    assert events[0]["type"] == "message_received"
    assert events[0]["data"]["filters"] == ["message_received"]
    assert events[0]["data"]["subscribed"] == ["message_received"]

    api.create_webhook(account_id, events=["accepted_invitation"])
    events = eventually(lambda: len(api.feed(first)) == 2 and api.feed(first))
    assert events[1]["data"]["subscribed"] == ["accepted_invitation", "message_received"]


def test_a_connector_the_operator_has_not_enabled_is_refused(
    start_server: Callable[..., Server], connect: Callable[..., Api], tmp_path: Path
) -> None:
    api = connect(start_server(monitor_env(tmp_path)))
    response = api.http.post("/v2/accounts", json={"connector": "os:system"}, headers=api.auth)
    assert response.status_code == 400
    assert response.json()["error"]["field"] == "connector"
    assert "HOOKSTREAM_CONNECTORS" in response.json()["error"]["message"]


def test_failing_connector_is_errored_then_recovers_with_both_status_events_in_the_log(
    start_server: Callable[..., Server], connect: Callable[..., Api], tmp_path: Path
) -> None:
    upstream_down = tmp_path / "upstream-down"
    upstream_down.touch()
    api = connect(start_server(monitor_env(tmp_path)))
    account_id = api.create_account(connector="tests.example_connector:FlakyConnector")
    webhook_id = api.create_webhook(account_id)["webhook_id"]

    state = eventually(lambda: account(api, account_id)["monitoring"] == "errored" and account(api, account_id))
    assert "upstream returned HTTP 503" in state["status_reason"]
    upstream_down.unlink()
    eventually(lambda: account(api, account_id)["monitoring"] == "running")
    assert account(api, account_id)["status_reason"] is None

    # Several failed retries make one outage: one errored event, not one per retry.
    events = [event for event in api.feed(webhook_id) if event["type"].startswith("account.status.")]
    assert [event["type"] for event in events] == ["account.status.errored", "account.status.running"]
    assert "upstream returned HTTP 503" in events[0]["data"]["reason"]
    assert events[0]["data"]["account"] == {"id": account_id, "status": "errored"}


def test_demo_connector_produces_catalog_events_at_the_configured_rate(
    start_server: Callable[..., Server], connect: Callable[..., Api], tmp_path: Path
) -> None:
    api = connect(start_server(monitor_env(tmp_path, HOOKSTREAM_DEMO_RATE="20")))
    account_id = api.create_account(connector="demo")
    webhook_id = api.create_webhook(account_id)["webhook_id"]
    started = time.monotonic()
    events = eventually(lambda: len(api.feed(webhook_id)) >= 20 and api.feed(webhook_id))
    assert time.monotonic() - started >= 0.5, "20 events at 20/s take about a second"
    types = {event["type"] for event in events}
    assert types <= {
        "message_received",
        "message.new",
        "message.receipt.read",
        "message.reaction.new",
        "email.new",
        "message.created",
        "accepted_invitation",
        "relation.request.accept",
        "prospect.statusChanged",
        "message.delivery",
    }
    assert all(event["account_id"] == account_id for event in events)
    assert (
        len({event["data"].get("message", {}).get("id") for event in events if event["type"] == "message_received"}) > 1
    )

    only_invitations = api.create_webhook(account_id, events=["accepted_invitation"])["webhook_id"]
    webhook_call(api, webhook_id, "stop")
    invitations = eventually(lambda: api.feed(only_invitations))
    assert {event["type"] for event in invitations} == {"accepted_invitation"}


def test_a_connector_that_hangs_on_cancel_does_not_hold_up_stopping_or_shutdown(
    start_server: Callable[..., Server], connect: Callable[..., Api], tmp_path: Path
) -> None:
    server = start_server(monitor_env(tmp_path))
    api = connect(server)
    stubborn = api.create_account(connector="tests.example_connector:StubbornConnector")
    webhook_id = api.create_webhook(stubborn)["webhook_id"]
    started = time.monotonic()
    webhook_call(api, webhook_id, "stop")
    assert time.monotonic() - started < 10
    assert account(api, stubborn)["monitoring"] == "idle"

    webhook_call(api, webhook_id, "start")
    other = api.create_account(connector=ECHO)
    other_hook = api.create_webhook(other)["webhook_id"]
    eventually(lambda: api.feed(other_hook))
    started = time.monotonic()
    server.stop(timeout=20)
    assert time.monotonic() - started < 15
    assert "Application shutdown complete" in server.log()


@pytest.fixture
def demo_server(tmp_path: Path) -> Iterator[Callable[[], tuple[subprocess.Popen[str], list[str]]]]:
    """Run `hookstream serve --demo` on the default SQLite in a fresh directory; returns it and its curl commands."""
    processes: list[subprocess.Popen[str]] = []

    def run() -> tuple[subprocess.Popen[str], list[str]]:
        env = {"PATH": "/usr/bin:/bin", "HOOKSTREAM_DEMO_RATE": "10", "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(ROOT)}
        process = subprocess.Popen(
            [sys.executable, "-m", "app.cli", "serve", "--demo", "--host", "127.0.0.1", "--port", str(free_port())],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        processes.append(process)
        assert process.stdout is not None
        commands: list[str] = []
        deadline = time.monotonic() + 30
        while len(commands) < 3 and time.monotonic() < deadline:
            line = process.stdout.readline()
            if not line:
                break
            if line.strip().startswith("curl "):
                commands.append(line.strip())
        assert len(commands) == 3, "serve --demo printed no curl commands"
        url = re.search(r"http://[\d.]+:\d+", commands[0])
        assert url is not None
        eventually(lambda: _up(url.group(0)))
        return process, commands

    yield run
    for process in processes:
        process.kill()
        process.wait()
        if process.stdout is not None:
            process.stdout.close()


def _up(url: str) -> bool:
    try:
        return httpx.get(url + "/healthz").status_code == 200
    except httpx.TransportError:
        return False


def _curl(command: str, timeout: float = 20) -> str:
    return subprocess.run(command, shell=True, capture_output=True, text=True, timeout=timeout, check=False).stdout


@pytest.mark.skipif(TEST_DATABASE != "sqlite", reason="serve --demo is the embedded SQLite first run")
def test_serve_demo_prints_curl_commands_that_poll_stream_and_show_usage(
    demo_server: Callable[[], tuple[subprocess.Popen[str], list[str]]], tmp_path: Path
) -> None:
    process, (poll, stream, usage_command) = demo_server()
    assert (tmp_path / "hookstream.db").exists()
    assert stream.startswith("curl -N ")
    page = eventually(lambda: httpx.Response(200, content=_curl(poll)).json()["events"])
    assert page[0]["account_id"] == "demo"
    streamed = _curl(stream.replace("curl -N ", "curl -N --max-time 3 "))
    assert "event: " in streamed and "data: {" in streamed
    bill = httpx.Response(200, content=_curl(usage_command)).json()["data"]
    assert bill["account_id"] == "demo"
    assert bill["monitoring"] == "running"

    process.terminate()
    process.wait(20)
    _, again = demo_server()
    assert _key_and_webhook(again[0]) == _key_and_webhook(poll), "a second run reuses the demo key and webhook"


def _key_and_webhook(command: str) -> tuple[str, str]:
    found = re.search(r"x-api-key: (\S+)' .*/v2/webhooks/([0-9a-f]{24})/", command)
    assert found is not None, command
    return found.group(1), found.group(2)
