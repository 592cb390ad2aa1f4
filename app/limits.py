"""Per-key rate limits: a token bucket per API key (and per account for ingest), in memory, per process.

Each process keeps its own buckets, so with N processes a key may make up to N times its limit:
sharing them would put a database or network round trip on every request, and the limit is there to
keep one caller from crowding out the others, not to bill. The check is one dict lookup and a few
float operations, cheap enough for the polling path.
"""

from __future__ import annotations

import math
import re
import time
from typing import NamedTuple

from app.errors import RateLimited

_RATE = re.compile(r"(\d{1,9})/(s|m)", re.ASCII)
# Past this many buckets, full ones (indistinguishable from a new bucket) are dropped.
_MAX_BUCKETS = 10_000


class RateLimit(NamedTuple):
    """`requests` per `unit` ("second" or "minute"), in bursts of up to `requests`."""

    requests: int
    unit: str

    @property
    def per_second(self) -> float:
        return self.requests / (1.0 if self.unit == "second" else 60.0)


def parse_rate(text: str) -> RateLimit:
    """`100/s` or `600/m`: that many requests per second or minute, in bursts of up to that many."""
    match = _RATE.fullmatch(text.strip())
    if match is None or int(match.group(1)) == 0:
        raise ValueError(f"{text!r} is not a rate like 100/s or 600/m (a positive number of requests per unit)")
    return RateLimit(int(match.group(1)), "second" if match.group(2) == "s" else "minute")


class Buckets:
    """One token bucket per key; `take` spends a token or raises RateLimited saying when one is back."""

    def __init__(self, limit: RateLimit, what: str) -> None:
        self._limit = limit
        self._burst = float(limit.requests)
        self._rate = limit.per_second
        # Seconds a drained bucket takes to fill up again.
        self._refill = limit.requests / limit.per_second
        self._what = what
        # key -> [tokens left, when they were counted].
        self._buckets: dict[str, list[float]] = {}

    def take(self, key: str) -> None:
        """Spend one of `key`'s tokens; 429 `rate_limited` with the seconds until the next one when none is left."""
        now = time.monotonic()
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= _MAX_BUCKETS:
                self._drop_full(now)
            self._buckets[key] = [self._burst - 1.0, now]
            return
        tokens = bucket[0] + (now - bucket[1]) * self._rate
        if tokens > self._burst:
            tokens = self._burst
        bucket[1] = now
        if tokens >= 1.0:
            bucket[0] = tokens - 1.0
            return
        bucket[0] = tokens
        wait = (1.0 - tokens) / self._rate
        raise RateLimited(
            f"{self._what} may make {self._limit.requests} requests per {self._limit.unit}; retry in {wait:.1f} s.",
            retry_after=max(1, math.ceil(wait)),
        )

    def _drop_full(self, now: float) -> None:
        refill = self._refill
        for key in [key for key, (_, at) in self._buckets.items() if now - at >= refill]:
            del self._buckets[key]
