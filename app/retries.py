"""When a failed delivery is tried again: the schedule, its jitter, and the receiver's Retry-After (SPEC §8.1).

Jitter: each retry delay is the schedule's delay times a factor drawn uniformly from
[0.8, 1.2], so endpoints coming back are not hit by every webhook's retries at once.
Bounded: no retry is due later than the event's first attempt plus the schedule's
total (27.6 hours by default). Jitter spreads retries within the schedule; it never
makes an event's retries outlast it.

Retry-After: a 429 or 503 that names a time (delta-seconds or an HTTP-date) puts the
next attempt no earlier than that time, capped at HOOKSTREAM_RETRY_AFTER_MAX after
now; when the jittered delay is longer, it applies. The receiver's ask is honoured
past the schedule's total bound: it said when it can take the event.
"""

from __future__ import annotations

import email.utils
import random
import re
from collections.abc import Sequence
from typing import NamedTuple

JITTER = (0.8, 1.2)
RETRY_AFTER_STATUSES = (429, 503)
# Delta-seconds is ASCII digits only (RFC 9110 §10.2.3); int() would also take ' 5', '+5', '1_0'.
_DELTA_SECONDS = re.compile(r"\d{1,10}", re.ASCII)


class NextAttempt(NamedTuple):
    """When the event is due again (µs), and the time the receiver's Retry-After named, capped (µs) or None."""

    at: int
    retry_after: int | None


def retry_after_seconds(value: str | None, now_wall: float) -> float | None:
    """Seconds from now that a Retry-After value names (delta-seconds or HTTP-date); None when absent or malformed."""
    if value is None:
        return None
    text = value.strip()
    if _DELTA_SECONDS.fullmatch(text):
        return float(text)
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # an HTTP-date is GMT by definition
        return None
    return max(0.0, when.timestamp() - now_wall)


def next_attempt(
    schedule: Sequence[float],
    attempt: int,
    now: int,
    first_attempt_at: int | None,
    *,
    retry_after: float | None = None,
    retry_after_max: float,
    rng: random.Random,
) -> NextAttempt | None:
    """When attempt number `attempt + 1` is due, after attempt `attempt` failed at `now`; None once exhausted."""
    if attempt > len(schedule):
        return None
    delay = schedule[attempt - 1] * rng.uniform(*JITTER)
    first = now if first_attempt_at is None else first_attempt_at
    due = max(now, min(now + int(delay * 1_000_000), first + int(sum(schedule) * 1_000_000)))
    if retry_after is None:
        return NextAttempt(due, None)
    asked = now + int(min(retry_after, retry_after_max) * 1_000_000)
    return NextAttempt(max(due, asked), asked)
