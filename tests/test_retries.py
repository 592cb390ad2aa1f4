"""Retry times (app/retries.py): jitter within [0.8, 1.2], bounded by the schedule's total, Retry-After parsing."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest

from app.retries import next_attempt, retry_after_seconds

SCHEDULE = (5.0, 300.0, 1800.0, 7200.0, 18000.0, 36000.0, 36000.0)
S = 1_000_000


def retry_times(rng: random.Random, send_seconds: float = 0.0) -> list[int]:
    """When each retry of one event is due (µs from its first attempt), each send taking `send_seconds`."""
    times: list[int] = []
    now = 0
    for attempt in range(1, len(SCHEDULE) + 2):
        planned = next_attempt(SCHEDULE, attempt, now, 0 if attempt > 1 else None, retry_after_max=3600, rng=rng)
        if planned is None:
            assert attempt == len(SCHEDULE) + 1, "the schedule ends after its last delay"
            return times
        times.append(planned.at)
        now = planned.at + int(send_seconds * S)
    raise AssertionError("unreachable")


def test_each_delay_is_the_schedules_times_a_factor_within_0_8_and_1_2() -> None:
    rng = random.Random(7)
    factors: list[float] = []
    for _ in range(500):
        now = 0
        for attempt, delay in enumerate(SCHEDULE[:3], start=1):
            planned = next_attempt(SCHEDULE, attempt, now, 0, retry_after_max=3600, rng=rng)
            assert planned is not None
            factors.append((planned.at - now) / (delay * S))
            now = planned.at
    assert min(factors) >= 0.8 and max(factors) <= 1.2
    # Spread over the whole range, not stuck at one value.
    assert min(factors) < 0.82 and max(factors) > 1.18


@pytest.mark.parametrize("send_seconds", [0.0, 15.0])
def test_no_retry_is_due_past_the_first_attempt_plus_the_schedules_total(send_seconds: float) -> None:
    rng = random.Random(11)
    total = int(sum(SCHEDULE) * S)
    last_retries = []
    for _ in range(2000):
        times = retry_times(rng, send_seconds)
        assert len(times) == len(SCHEDULE)
        assert times == sorted(times) and max(times) <= total
        last_retries.append(times[-1])
    # The bound is reached (late draws are clipped to it), and early draws end before it.
    assert max(last_retries) == total and min(last_retries) < total * 0.95


def test_retry_after_sets_the_earliest_time_capped_and_the_longer_schedule_delay_wins() -> None:
    rng = random.Random(3)
    asked = next_attempt(SCHEDULE, 1, 0, None, retry_after=120, retry_after_max=3600, rng=rng)
    assert asked is not None and asked.at == asked.retry_after == 120 * S
    capped = next_attempt(SCHEDULE, 1, 0, None, retry_after=86_400, retry_after_max=3600, rng=rng)
    assert capped is not None and capped.at == capped.retry_after == 3600 * S
    shorter = next_attempt(SCHEDULE, 3, 0, 0, retry_after=1, retry_after_max=3600, rng=rng)
    assert shorter is not None and shorter.retry_after == 1 * S and 0.8 * 1800 * S <= shorter.at <= 1.2 * 1800 * S


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("120", 120.0),
        (" 7 ", 7.0),
        ("0", 0.0),
        (None, None),
        ("", None),
        ("-5", None),
        ("1.5", None),
        ("+5", None),
        ("1_0", None),
        ("٣", None),
        ("soon", None),
        ("Wed, 21 Oct 2015 07:28:00", None),
    ],
)
def test_retry_after_delta_seconds_are_ascii_digits(value: str | None, seconds: float | None) -> None:
    assert retry_after_seconds(value, 0.0) == seconds


def test_retry_after_http_dates_count_from_now_and_past_dates_mean_now() -> None:
    now = datetime(2026, 1, 15, 12, 0, 0, tzinfo=UTC)
    ahead = format_datetime(now + timedelta(seconds=90), usegmt=True)
    assert retry_after_seconds(ahead, now.timestamp()) == 90.0
    behind = format_datetime(now - timedelta(hours=1), usegmt=True)
    assert retry_after_seconds(behind, now.timestamp()) == 0.0
