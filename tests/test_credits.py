"""Credit metering (SPEC §5.1, §7) with a test clock the server reads, so days pass in no time."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.monitoring import T0, FakeClock, checkpointed_at, eventually, monitor_env, usage, webhook_call
from tests.server import TEST_DATABASE, Api, Server

HOUR = 3600.0


@pytest.fixture
def clock(tmp_path: Path) -> FakeClock:
    return FakeClock(tmp_path / "clock")


@pytest.fixture
def server(start_server: Callable[..., Server], tmp_path: Path, clock: FakeClock) -> Server:
    return start_server(monitor_env(tmp_path, HOOKSTREAM_TEST_CLOCK_FILE=str(clock.path)))


@pytest.fixture
def api(server: Server, connect: Callable[..., Api]) -> Api:
    return connect(server)


def test_a_day_of_monitoring_costs_the_credits_per_day(api: Api, clock: FakeClock) -> None:
    account_id = api.create_account()
    webhook_id = api.create_webhook(account_id)["webhook_id"]
    clock.advance(24 * HOUR)
    webhook_call(api, webhook_id, "stop")
    bill = usage(api, account_id)
    assert bill["credits_per_day"] == 10
    assert bill["credits_consumed"] == 10
    assert bill["daily"] == [{"date": "2025-01-15", "credits": 10}]
    assert bill["intervals"] == [
        {"started_at": "2025-01-15T00:00:00.000000Z", "stopped_at": "2025-01-16T00:00:00.000000Z"}
    ]


def test_running_monitor_accrues_up_to_now(api: Api, clock: FakeClock) -> None:
    account_id = api.create_account()
    api.create_webhook(account_id)
    clock.advance(6 * HOUR)
    bill = usage(api, account_id)
    assert bill["monitoring"] == "running"
    assert bill["credits_consumed"] == 2.5
    assert bill["intervals"][0]["stopped_at"] is None


def test_two_webhooks_on_one_account_cost_what_one_costs(api: Api, clock: FakeClock) -> None:
    account_id = api.create_account()
    first = api.create_webhook(account_id)["webhook_id"]
    second = api.create_webhook(account_id, events=["message_received"])["webhook_id"]
    clock.advance(6 * HOUR)
    webhook_call(api, first, "stop")
    clock.advance(6 * HOUR)
    webhook_call(api, second, "stop")
    clock.advance(6 * HOUR)  # idle time is free
    assert usage(api, account_id)["credits_consumed"] == 5


def test_usage_is_split_by_utc_day(api: Api, clock: FakeClock) -> None:
    clock.set(T0 + 18 * HOUR)
    account_id = api.create_account()
    webhook_id = api.create_webhook(account_id)["webhook_id"]
    clock.advance(12 * HOUR)
    webhook_call(api, webhook_id, "stop")
    clock.advance(24 * HOUR)
    webhook_call(api, webhook_id, "start")
    clock.advance(3 * HOUR)
    bill = usage(api, account_id)
    assert bill["daily"] == [
        {"date": "2025-01-15", "credits": 2.5},
        {"date": "2025-01-16", "credits": 2.5},
        {"date": "2025-01-17", "credits": 1.25},
    ]
    assert bill["credits_consumed"] == 6.25


def test_credits_are_prorated_to_the_second_and_exact_to_the_micro_credit(api: Api, clock: FakeClock) -> None:
    account_id = api.create_account()
    webhook_id = api.create_webhook(account_id)["webhook_id"]
    clock.advance(1.75)
    assert usage(api, account_id)["credits_consumed"] == 0.000115  # 10 / 86400 per whole second, rounded down
    clock.advance(88.25)
    webhook_call(api, webhook_id, "stop")
    assert usage(api, account_id)["credits_consumed"] == 0.010416  # 90 s: 0.0104166…


def test_credits_per_day_is_configurable(
    start_server: Callable[..., Server], connect: Callable[..., Api], tmp_path: Path, clock: FakeClock
) -> None:
    env = monitor_env(tmp_path, HOOKSTREAM_TEST_CLOCK_FILE=str(clock.path), HOOKSTREAM_CREDITS_PER_DAY="0.3")
    api = connect(start_server(env))
    account_id = api.create_account()
    api.create_webhook(account_id)
    clock.advance(8 * HOUR)
    bill = usage(api, account_id)
    assert bill["credits_per_day"] == 0.3
    assert bill["credits_consumed"] == 0.1


def test_graceful_restart_neither_loses_nor_double_counts_time(
    server: Server, connect: Callable[..., Api], api: Api, clock: FakeClock
) -> None:
    account_id = api.create_account()
    api.create_webhook(account_id)
    clock.advance(HOUR)
    server.stop()
    clock.advance(HOUR)  # the server is down: not monitored, not billed
    server.start()
    api = connect(server, api.api_key)
    clock.advance(HOUR)
    bill = usage(api, account_id)
    assert bill["credits_consumed"] == 0.833333  # two hours of the three
    assert [interval["stopped_at"] for interval in bill["intervals"]] == ["2025-01-15T01:00:00.000000Z", None]


@pytest.mark.skipif(TEST_DATABASE != "sqlite", reason="reads the SQLite file to see the checkpoint land")
def test_crash_loses_at_most_the_time_since_the_last_checkpoint(
    server: Server, connect: Callable[..., Api], api: Api, clock: FakeClock
) -> None:
    account_id = api.create_account()
    api.create_webhook(account_id)
    clock.advance(HOUR)
    eventually(lambda: checkpointed_at(server, account_id) == int((T0 + HOUR) * 1_000_000))
    clock.advance(60)  # monitored after the last checkpoint: lost in the crash
    server.kill()
    clock.advance(HOUR)
    server.start()
    api = connect(server, api.api_key)
    eventually(lambda: len(usage(api, account_id)["intervals"]) == 2)
    bill = usage(api, account_id)
    assert bill["intervals"][0]["stopped_at"] == "2025-01-15T01:00:00.000000Z"
    assert bill["intervals"][1]["started_at"] >= "2025-01-15T02:01:00.000000Z"
    clock.advance(HOUR)
    # The second interval started once the dead process's lease expired, at the clock's time then.
    bill = usage(api, account_id)
    assert bill["credits_consumed"] == 0.833333
