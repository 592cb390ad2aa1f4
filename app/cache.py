"""A small expiring map, for reads that may be a moment stale: API keys and webhooks on hot routes.

Changes made in this process drop their entries at once; the time-to-live only bounds how long
a change made by another process sharing the database can go unseen.
"""

from __future__ import annotations

import time
from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")


class Expiring(Generic[K, V]):
    """Entries live `ttl` seconds; past `max_size` the oldest half is dropped."""

    def __init__(self, ttl: float, max_size: int = 10_000) -> None:
        self._ttl = ttl
        self._max_size = max_size
        self._entries: dict[K, tuple[float, V]] = {}

    def get(self, key: K) -> V | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry[0] < time.monotonic():
            del self._entries[key]
            return None
        return entry[1]

    def put(self, key: K, value: V) -> None:
        if len(self._entries) >= self._max_size:
            for stale in list(self._entries)[: self._max_size // 2]:
                del self._entries[stale]
        self._entries[key] = (time.monotonic() + self._ttl, value)

    def discard(self, key: K) -> None:
        self._entries.pop(key, None)

    def clear(self) -> None:
        self._entries.clear()
