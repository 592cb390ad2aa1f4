"""The `demo` connector: realistic synthetic events for trying hookstream and for benchmarks.

It plays a busy connected account: mostly messages, some accepted invitations and status
changes, drawn from the catalog's own examples with fresh ids and times, at
`HOOKSTREAM_DEMO_RATE` events per second, limited to the types the account's webhooks want.
"""

from __future__ import annotations

import asyncio
import copy
import random
import secrets
from typing import Any

from app.catalog import EventCatalog
from app.connectors.base import Emit, MonitoredAccount, Subscription
from app.times import iso_millis

# (weight, type): what a messaging/outreach account's day looks like; types missing from
# the catalog are skipped.
MIX: tuple[tuple[int, str], ...] = (
    (30, "message_received"),
    (20, "message.new"),
    (8, "message.receipt.read"),
    (6, "message.reaction.new"),
    (10, "email.new"),
    (8, "message.created"),
    (6, "accepted_invitation"),
    (4, "relation.request.accept"),
    (4, "prospect.statusChanged"),
    (4, "message.delivery"),
)
# Types a connector should never invent: the monitor and delivery own them.
_RESERVED_PREFIXES = ("account.status.", "webhook.")


def _fresh_ids(value: Any, account_id: str, now: str) -> Any:
    """The example with new random ids (keeping their prefixes), this account, and the current time."""
    if isinstance(value, dict):
        fresh: dict[str, Any] = {}
        for key, item in value.items():
            if key == "account_id" and isinstance(item, str):
                fresh[key] = account_id
            elif (key == "id" or key.endswith(("_id", "Id"))) and isinstance(item, str) and "_" in item:
                fresh[key] = item.split("_", 1)[0] + "_" + secrets.token_hex(5)
            elif key.endswith(("timestamp", "_at", "At")) and isinstance(item, str):
                fresh[key] = now
            else:
                fresh[key] = _fresh_ids(item, account_id, now)
        return fresh
    if isinstance(value, list):
        return [_fresh_ids(item, account_id, now) for item in value]
    return value


class DemoConnector:
    """Synthetic events of the subscribed types at a steady rate."""

    def __init__(self, *, rate: float, catalog: EventCatalog) -> None:
        self.rate = rate
        self.catalog = catalog

    def _choices(self, subscribed: frozenset[str]) -> tuple[list[str], list[int]]:
        mix = [(weight, name) for weight, name in MIX if name in subscribed and self.catalog.get(name)]
        if not mix:
            mix = [(1, name) for name in sorted(subscribed) if not name.startswith(_RESERVED_PREFIXES)]
        return [name for _, name in mix], [weight for weight, _ in mix]

    def event(self, event_type: str, account_id: str) -> dict[str, Any]:
        """One realistic event of that type for the account."""
        entry = self.catalog.get(event_type)
        example = copy.deepcopy(entry.example) if entry is not None else {}
        data: dict[str, Any] = _fresh_ids(example, account_id, iso_millis())
        return data

    async def run(self, account: MonitoredAccount, subscribed_types: Subscription, emit: Emit) -> None:
        if self.rate <= 0:
            await asyncio.Event().wait()
        loop = asyncio.get_running_loop()
        started = loop.time()
        emitted = 0
        while True:
            names, weights = self._choices(subscribed_types.types)
            if not names:
                await subscribed_types.changed()
                started, emitted = loop.time(), 0
                continue
            # Catch up to where the rate says we should be, so slow appends do not lower the rate;
            # a group is emitted concurrently so the log's group commit takes it in one transaction.
            due = int((loop.time() - started) * self.rate) + 1 - emitted
            if due > 0:
                picks = random.choices(names, weights, k=min(due, 1000))
                await asyncio.gather(*(emit(name, self.event(name, account.id)) for name in picks))
                emitted += len(picks)
            next_at = started + emitted / self.rate
            await asyncio.sleep(max(0.0, min(next_at - loop.time(), 1.0)))
