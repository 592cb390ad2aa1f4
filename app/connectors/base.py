"""The connector interface: what a monitor runs to produce an account's events (SPEC §7).

A connector is a class with a no-argument constructor (configure it from your own
environment variables) and one coroutine, `run(account, subscribed_types, emit)`. The monitor
calls `run` once the account has an active webhook and cancels it when the last one stops.
`run` raising is a failure: the monitor marks the account `errored`, waits (exponential
backoff with jitter) and calls `run` again on a fresh instance. `run` returning means there is
nothing more to produce; the monitor keeps running (and metering) until it is stopped.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol


@dataclass(frozen=True, slots=True)
class MonitoredAccount:
    """The account a connector works for."""

    id: str
    name: str | None
    connector: str


class Emit(Protocol):
    """Append one event to the account's log; returns its seq, or None once the account is no longer monitored.

    `type` and `data` follow SPEC §3; a producer `id` makes the call idempotent. Returns after
    the event is durable. An invalid event raises (and so fails the connector).
    """

    async def __call__(
        self, type: str, data: dict[str, Any], *, id: str | None = None, timestamp: str | None = None
    ) -> int | None: ...


class Subscription:
    """The union of the account's active webhook filters, kept current while the connector runs."""

    def __init__(self, filters: frozenset[str], types: frozenset[str]) -> None:
        self.filters = filters
        self.types = types
        self._changed = asyncio.Event()

    def __contains__(self, event_type: object) -> bool:
        return event_type in self.types

    async def changed(self) -> frozenset[str]:
        """Wait until the union changes (a webhook created, started, stopped or re-filtered); returns the new types."""
        await self._changed.wait()
        return self.types

    def update(self, filters: frozenset[str], types: frozenset[str]) -> bool:
        """Replace the union and wake `changed()` waiters; False when nothing changed."""
        if filters == self.filters:
            return False
        self.filters, self.types = filters, types
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()
        return True


class Connector(Protocol):
    """Produces one account's events from its upstream source."""

    async def run(self, account: MonitoredAccount, subscribed_types: Subscription, emit: Emit) -> None: ...


ConnectorFactory = Callable[[], Connector]


class ConnectorError(Exception):
    """A connector name that cannot be loaded."""
