"""The wall clock storage stamps rows with, in microseconds since the epoch."""

from __future__ import annotations

import time


def now_micros() -> int:
    """Wall-clock time in µs: what `created_at`, `updated_at` and `appended_at` hold."""
    return time.time_ns() // 1000
