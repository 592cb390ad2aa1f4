"""Storage trouble at the storage layer, on every backend: one error, nothing half-written, and recovery.

A write the database cannot take (SQLite out of pages, the PostgreSQL connection cut in the
middle of the append) raises `StorageUnavailable`, stores nothing, and leaves the backend
working: the next write succeeds with the next seq, and no restart is needed.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator

import pytest

from storage.base import NewEvent, Storage, StorageUnavailable
from tests.test_storage_contract import event, feed_seqs, monitored_account

pytestmark = pytest.mark.anyio


def big_event(event_id: str) -> NewEvent:
    """An event of 20 kB: one needs pages of its own."""
    small = event(event_id=event_id)
    return small._replace(tail=small.tail[:-1] + b',"data":{"blob":"' + b"x" * 20_000 + b'"}}')


@contextlib.asynccontextmanager
async def sqlite_full(storage: Storage) -> AsyncIterator[None]:
    """SQLite's own SQLITE_FULL: the file may not grow by a page (`max_page_count` at its size)."""
    writer = storage._writer  # type: ignore[attr-defined]

    def cap() -> None:
        pages = writer.execute("PRAGMA page_count").fetchone()[0]
        writer.execute(f"PRAGMA max_page_count={pages}")

    await storage._on_writer(cap)  # type: ignore[attr-defined]
    try:
        yield
    finally:
        await storage._on_writer(lambda: writer.execute("PRAGMA max_page_count=4294967294"))  # type: ignore[attr-defined]


async def append_cut_by_postgres(storage: Storage, account_id: str, events: list[NewEvent]) -> None:
    """An append whose connection the server terminates while it waits on the log's head lock."""
    import asyncpg

    url = os.environ["HOOKSTREAM_TEST_POSTGRES_URL"]
    holder = await asyncpg.connect(url, server_settings={"search_path": f'"{storage.schema}"'})  # type: ignore[attr-defined]
    admin = await asyncpg.connect(url)
    try:
        transaction = holder.transaction()
        await transaction.start()
        await holder.execute("SELECT seq FROM log_head FOR UPDATE")
        append = asyncio.create_task(storage.append(account_id, events))
        # Wait until the append is blocked on the lock, then cut every connection of this process's pool.
        for _ in range(200):
            waiting = await admin.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1 AND wait_event_type = 'Lock'",
                f"hookstream-pool-{os.getpid()}",
            )
            if waiting:
                break
            await asyncio.sleep(0.01)
        await admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1",
            f"hookstream-pool-{os.getpid()}",
        )
        await transaction.rollback()
        await append
    finally:
        await holder.close()
        await admin.close()


async def test_a_write_the_database_cannot_take_raises_storage_unavailable_and_stores_nothing(
    storage_backend: Storage, backend_name: str
) -> None:
    account_id, hook = await monitored_account(storage_backend)
    before = await storage_backend.append(account_id, [event(event_id="evt_before")])
    refused = [big_event(f"evt_refused_{n}") for n in range(50)]
    with pytest.raises(StorageUnavailable):
        if backend_name == "sqlite":
            async with sqlite_full(storage_backend):
                await storage_backend.append(account_id, refused)
                # Reads keep working while writes cannot.
                assert await feed_seqs(storage_backend, hook.id) == [before.appended[0].seq]
        else:
            await append_cut_by_postgres(storage_backend, account_id, refused)
    # Nothing of the refused append is stored, and the next write succeeds with the next seq.
    after = await storage_backend.append(account_id, [event(event_id="evt_after")])
    assert after.appended[0].seq == before.appended[0].seq + 1
    assert await feed_seqs(storage_backend, hook.id) == [before.appended[0].seq, after.appended[0].seq]


async def test_the_writer_keeps_serving_after_many_refused_batches(storage_backend: Storage, backend_name: str) -> None:
    if backend_name != "sqlite":
        pytest.skip("a full file is SQLite's; PostgreSQL's cut connection is the test above")
    account_id, hook = await monitored_account(storage_backend)
    async with sqlite_full(storage_backend):
        results = await asyncio.gather(
            *(storage_backend.append(account_id, [big_event(f"evt_{n}")]) for n in range(20)),
            return_exceptions=True,
        )
    assert results and all(isinstance(result, StorageUnavailable) for result in results), results
    done = await storage_backend.append(account_id, [event(event_id="evt_after")])
    assert await feed_seqs(storage_backend, hook.id) == [done.appended[0].seq]
