"""The `storage_backend` fixture: every storage contract test runs once per backend."""

from __future__ import annotations

import importlib.util
import os
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from uuid import uuid4

import pytest

from app.catalog import filter_matches
from storage.base import Storage
from storage.sqlite import SQLiteStorage

POSTGRES_URL_VARIABLE = "HOOKSTREAM_TEST_POSTGRES_URL"


def open_backend(name: str, tmp_path: Path, schema: str | None = None) -> Storage:
    """A new, unopened backend of that kind; skips the test when it cannot run here."""
    if name == "sqlite":
        return SQLiteStorage(str(tmp_path / "contract.db"), matcher=filter_matches)
    url = os.environ.get(POSTGRES_URL_VARIABLE)
    if not url:
        pytest.skip(f"postgres backend: set {POSTGRES_URL_VARIABLE}=postgresql://… to run it")
    if importlib.util.find_spec("asyncpg") is None:
        pytest.skip("postgres backend: asyncpg is not installed")
    from storage.postgres import PostgresStorage

    # A schema per test, so runs sharing one database never see each other's data.
    return PostgresStorage(url, matcher=filter_matches, schema=schema or f"t_{uuid4().hex[:12]}")


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def backend_name(request: pytest.FixtureRequest) -> str:
    """Which backend this run of a contract test exercises."""
    name: str = request.param
    return name


@pytest.fixture
def backend_schema() -> str:
    """The PostgreSQL schema of this test (unused by SQLite, whose database is a file in tmp_path)."""
    return f"t_{uuid4().hex[:12]}"


@pytest.fixture
def same_backend(backend_name: str, backend_schema: str, tmp_path: Path) -> Callable[[], Storage]:
    """Make new, unopened instances of one backend over the same database (to test reopening)."""
    return lambda: open_backend(backend_name, tmp_path, backend_schema)


@pytest.fixture
async def storage_backend(
    backend_name: str, backend_schema: str, same_backend: Callable[[], Storage]
) -> AsyncIterator[Storage]:
    """An open backend with an empty log, closed (and its PostgreSQL schema dropped) after the test."""
    backend = same_backend()
    await backend.open()
    try:
        yield backend
    finally:
        await backend.close()
        if backend_name == "postgres":
            await _drop_schema(os.environ[POSTGRES_URL_VARIABLE], backend_schema)


async def _drop_schema(url: str, schema: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(url)
    try:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        await conn.close()
