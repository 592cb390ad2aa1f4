"""The PostgreSQL pool as the backend uses it: each call raises `StorageUnavailable` when the database is gone.

asyncpg reports a server that is down, restarting or out of room in many ways: the socket
refuses (`OSError`), the connection is cut under a query (`ConnectionDoesNotExistError`,
`AdminShutdownError` after `pg_terminate_backend`), the server is starting
(`CannotConnectNowError`), a pool has no connection to give in time (`TimeoutError`).
Each is the same thing to a caller — try again shortly — so each becomes one error here.
The pool replaces a broken connection at its next acquire, so once the server is back
the next call just works: nothing needs restarting.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from storage._unavailable import guarded, logger

# Errors that mean the server cannot take a call now; a hot standby refusing writes is one too.
_UNAVAILABLE = (
    OSError,
    TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.OperatorInterventionError,
    asyncpg.InsufficientResourcesError,
    asyncpg.ReadOnlySQLTransactionError,
    # What asyncpg raises when a connection is cut while its protocol is mid-operation.
    asyncpg.InternalClientError,
)


def unavailable(exc: BaseException) -> bool:
    """Whether `exc` says the PostgreSQL server cannot take the call now."""
    if isinstance(exc, _UNAVAILABLE):
        return True
    # asyncpg's own words for a connection that died between two calls (its proxy is then detached,
    # "released back to the pool"), or a pool that is closing.
    text = str(exc)
    return isinstance(exc, asyncpg.InterfaceError) and any(word in text for word in ("closed", "closing", "released"))


class GuardedPool:
    """The pool's calls the backend makes, with unavailability raised as `StorageUnavailable`."""

    def __init__(self, pool: asyncpg.Pool, acquire_timeout: float) -> None:
        self._pool = pool
        self._acquire_timeout = acquire_timeout

    @contextlib.asynccontextmanager
    async def acquire(self) -> AsyncIterator[PoolConnectionProxy]:
        """A connection of the pool for a block; a lost connection in the block raises `StorageUnavailable`."""
        with guarded(unavailable):
            conn = await self._pool.acquire(timeout=self._acquire_timeout)
        try:
            with guarded(unavailable):
                yield conn
        finally:
            # The block's outcome stands: a connection that cannot be reset as it comes back (cut by
            # the server) is terminated by the pool, which opens a new one at the next acquire. Raising
            # here would report a committed transaction as failed.
            try:
                await self._pool.release(conn)
            except Exception as exc:
                logger.info("a broken connection was dropped from the pool: %s", exc)

    async def execute(self, query: str, *args: Any) -> str:
        async with self.acquire() as conn:
            result: str = await conn.execute(query, *args)
            return result

    async def fetch(self, query: str, *args: Any) -> list[asyncpg.Record]:
        async with self.acquire() as conn:
            rows: list[asyncpg.Record] = await conn.fetch(query, *args)
            return rows

    async def fetchrow(self, query: str, *args: Any) -> asyncpg.Record | None:
        async with self.acquire() as conn:
            row: asyncpg.Record | None = await conn.fetchrow(query, *args)
            return row

    async def fetchval(self, query: str, *args: Any) -> Any:
        async with self.acquire() as conn:
            return await conn.fetchval(query, *args)
