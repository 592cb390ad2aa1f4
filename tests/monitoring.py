"""What the monitoring tests share: a test clock the server meters with, and usage lookups."""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tests.server import Api, Server

T0 = datetime(2025, 1, 15, tzinfo=UTC).timestamp()
CONNECTORS = ",".join(
    f"tests.example_connector:{name}" for name in ("EchoConnector", "FlakyConnector", "StubbornConnector")
)


class FakeClock:
    """The server's metering clock, as a file of seconds (HOOKSTREAM_TEST_CLOCK_FILE)."""

    def __init__(self, path: Path, start: float = T0) -> None:
        self.path = path
        self.set(start)

    def set(self, seconds: float) -> None:
        self.seconds = seconds
        temporary = self.path.with_suffix(".tmp")
        temporary.write_text(f"{seconds:.6f}")
        os.replace(temporary, self.path)

    def advance(self, seconds: float) -> None:
        self.set(self.seconds + seconds)


def monitor_env(directory: Path, **extra: str) -> dict[str, str]:
    """Server settings for monitoring tests: quick checkpoints and backoff, the test connectors enabled."""
    return {
        "HOOKSTREAM_CHECKPOINT_INTERVAL": "200ms",
        "HOOKSTREAM_MONITOR_BACKOFF": "300ms",
        "HOOKSTREAM_MONITOR_BACKOFF_MAX": "1s",
        "HOOKSTREAM_CONNECTORS": CONNECTORS,
        "EXAMPLE_CONNECTOR_FAIL_FILE": str(directory / "upstream-down"),
        **extra,
    }


def eventually(check: Callable[[], Any], timeout: float = 20.0, interval: float = 0.05) -> Any:
    """Poll until `check()` returns something truthy; fail with its last value after `timeout`."""
    deadline = time.monotonic() + timeout
    value = check()
    while not value:
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s; last value: {value!r}")
        time.sleep(interval)
        value = check()
    return value


def intervals_never_overlap(intervals: list[dict[str, Any]]) -> bool:
    """Each interval ends before the next one starts."""
    for before, after in zip(intervals, intervals[1:], strict=False):
        if before["stopped_at"] is None or after["started_at"] < before["stopped_at"]:  # type: ignore[operator]
            return False
    return True


def account(api: Api, account_id: str) -> dict[str, Any]:
    response = api.http.get(f"/v2/accounts/{account_id}", headers=api.auth)
    assert response.status_code == 200, response.text
    data: dict[str, Any] = response.json()["data"]
    return data


def usage(api: Api, account_id: str) -> dict[str, Any]:
    response = api.http.get(f"/v2/accounts/{account_id}/usage", headers=api.auth)
    assert response.status_code == 200, response.text
    data: dict[str, Any] = response.json()["data"]
    return data


def open_intervals(api: Api, account_id: str) -> list[dict[str, Any]]:
    return [interval for interval in usage(api, account_id)["intervals"] if interval["stopped_at"] is None]


def webhook_call(api: Api, webhook_id: str, action: str) -> None:
    response = api.http.post(f"/v2/webhooks/{webhook_id}/{action}", headers=api.auth)
    assert response.status_code == 200, response.text


def checkpointed_at(server: Server, account_id: str) -> int:
    """The newest checkpoint (µs) of the account's open interval, read from the database as a crash would leave it."""
    path = server.database_url.removeprefix("sqlite:///")
    with sqlite3.connect(path) as conn:
        row = conn.execute(
            "SELECT max(checkpoint_at) FROM monitor_intervals WHERE account_id = ? AND stopped_at IS NULL",
            (account_id,),
        ).fetchone()
    return int(row[0] or 0)
