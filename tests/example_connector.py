"""Connectors a platform could write, loaded by the server by import path (`tests.example_connector:Name`)."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any


class EchoConnector:
    """Emits a `message_received` naming the subscribed types at start and whenever they change."""

    async def run(self, account: Any, subscribed_types: Any, emit: Any) -> None:
        count = 0
        while True:
            count += 1
            await emit(
                "message_received",
                {
                    "message": {"id": f"msg_{count}", "account_id": account.id},
                    "subscribed": sorted(subscribed_types.types),
                    "filters": sorted(subscribed_types.filters),
                },
            )
            await subscribed_types.changed()


class FlakyConnector:
    """Fails while the file named by EXAMPLE_CONNECTOR_FAIL_FILE exists, like an upstream that is down."""

    async def run(self, account: Any, subscribed_types: Any, emit: Any) -> None:
        if Path(os.environ["EXAMPLE_CONNECTOR_FAIL_FILE"]).exists():
            raise ConnectionError("upstream returned HTTP 503")
        await asyncio.Event().wait()


class StubbornConnector:
    """Takes an hour to clean up when cancelled: the server must not wait for it to shut down."""

    async def run(self, account: Any, subscribed_types: Any, emit: Any) -> None:
        try:
            await asyncio.Event().wait()
        finally:
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                pass
