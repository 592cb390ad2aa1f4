"""The default connector: events arrive through the ingest route (SPEC §6), so it only waits."""

from __future__ import annotations

import asyncio

from app.connectors.base import Emit, MonitoredAccount, Subscription


class IngestConnector:
    """Produces nothing itself; the platform pushes the account's events to `POST /v2/accounts/{id}/events`."""

    async def run(self, account: MonitoredAccount, subscribed_types: Subscription, emit: Emit) -> None:
        await asyncio.Event().wait()
