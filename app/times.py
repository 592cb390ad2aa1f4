"""Time in one place: microsecond clocks, and the ISO 8601 forms the API writes.

Times travel as integer microseconds since the Unix epoch and become text only at the edge.
The clock that meters monitored time is pluggable: production reads the system clock. Tests
of credits must cover hours and days without waiting for them, so `HOOKSTREAM_TEST_CLOCK_FILE`
(test-only: never set it in production) names a file holding the current time in seconds
since the epoch, which the test rewrites to move time forward; the server reads it every
time it asks for the time.
"""

from __future__ import annotations

import functools
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Protocol


def wall_micros() -> int:
    """Wall-clock µs since the epoch: leases, retention, records' own times; never moved by the test clock."""
    return time.time_ns() // 1000


def micros_ago(seconds: float) -> int:
    """The wall-clock µs that many seconds before now, such as the start of the retention window."""
    return wall_micros() - int(seconds * 1_000_000)


_EPOCH = datetime(1970, 1, 1)


def iso_micros(micros: int | None = None) -> str:
    """ISO 8601 UTC with microseconds and `Z`; now when no time is given."""
    if micros is None:
        micros = wall_micros()
    seconds, fraction = divmod(micros, 1_000_000)
    return f"{_iso_second(seconds)}.{fraction:06d}Z"


@functools.lru_cache(maxsize=8)
def _iso_second(seconds: int) -> str:
    # Integer arithmetic, not a float of seconds, so far-off times keep their microseconds; and
    # isoformat, not strftime's %Y, which writes the year 861 as `861` and shifts every field after it.
    # Cached: every response and every ingested event is stamped, mostly within the same second.
    return (_EPOCH + timedelta(seconds=seconds)).isoformat(timespec="seconds")


def iso_millis(micros: int | None = None) -> str:
    """ISO 8601 UTC with milliseconds and `Z`, as event timestamps are written; now when no time is given."""
    return iso_micros(micros)[:23] + "Z"


class Clock(Protocol):
    """Tells the time in microseconds since the Unix epoch."""

    def now_micros(self) -> int: ...


class SystemClock:
    """The real time."""

    def now_micros(self) -> int:
        return wall_micros()


class FileClock:
    """Test-only: the time written in a file, as seconds since the epoch (a decimal number)."""

    def __init__(self, path: str) -> None:
        self.path = Path(path)
        self._last = 0

    def now_micros(self) -> int:
        try:
            seconds = self.path.read_text().strip()
            # Parse the decimal text exactly: float seconds would lose microseconds past 2**53.
            whole, _, fraction = seconds.partition(".")
            micros = int(whole) * 1_000_000 + int((fraction + "000000")[:6])
        except (OSError, ValueError):
            # A test rewriting the file may be caught mid-write; time then stands still.
            return self._last
        self._last = micros
        return micros


def clock_from(test_clock_file: str | None) -> Clock:
    """The system clock, or the test clock when a test clock file is configured."""
    return SystemClock() if test_clock_file is None else FileClock(test_clock_file)
