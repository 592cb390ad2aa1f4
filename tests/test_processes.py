"""The release phase and WEB_CONCURRENCY (SPEC §12): `hookstream migrate`, and N server processes."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import sqlite3
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import asyncpg
import httpx
import pytest

from tests.commands import hookstream
from tests.server import SESSION, Api, Server, postgres_test_url

POSTGRES_URL = os.environ.get("HOOKSTREAM_TEST_POSTGRES_URL", "")
needs_postgres = [
    pytest.mark.postgres,
    pytest.mark.skipif(not POSTGRES_URL, reason="set HOOKSTREAM_TEST_POSTGRES_URL=postgresql://… to run it"),
]


def drop_schema(schema: str) -> None:
    async def drop() -> None:
        conn = await asyncpg.connect(POSTGRES_URL)
        try:
            await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        finally:
            await conn.close()

    asyncio.run(drop())


def test_migrate_creates_the_schema_and_exits_and_a_server_then_starts_on_it(
    start_server: Callable[..., Server], tmp_path: Path
) -> None:
    database = tmp_path / "release" / "hookstream.db"
    result = hookstream("migrate", env={"DATABASE_URL": f"sqlite:///{database}"})
    assert result.returncode == 0, result.stderr
    assert "up to date" in result.stdout
    with contextlib.closing(sqlite3.connect(database)) as conn:
        versions = [row[0] for row in conn.execute("SELECT version FROM schema_migrations ORDER BY version")]
        epoch = conn.execute("SELECT value FROM meta WHERE key = 'epoch'").fetchone()[0]
    assert versions and versions == list(range(1, len(versions) + 1))
    # Twice is harmless: the release phase runs at every deploy.
    assert hookstream("migrate", env={"DATABASE_URL": f"sqlite:///{database}"}).returncode == 0
    server = start_server(database_url=f"sqlite:///{database}")
    with contextlib.closing(Api(server)) as api:
        webhook_id = api.create_webhook(api.create_account())["webhook_id"]
        assert api.poll(webhook_id)["epoch"] == epoch


@pytest.mark.parametrize("postgres", [pytest.param(True, marks=needs_postgres)])
def test_migrate_applies_the_postgresql_schema(postgres: bool) -> None:
    schema = f"t_{SESSION}_migrate_{uuid.uuid4().hex[:6]}"
    try:
        result = hookstream("migrate", env={"DATABASE_URL": postgres_test_url(schema)})
        assert result.returncode == 0, result.stderr

        async def tables() -> set[str]:
            conn = await asyncpg.connect(POSTGRES_URL)
            try:
                rows = await conn.fetch(
                    "SELECT table_name FROM information_schema.tables WHERE table_schema = $1", schema
                )
                return {row[0] for row in rows}
            finally:
                await conn.close()

        assert {"schema_migrations", "events", "webhooks", "feed"} <= asyncio.run(tables())
    finally:
        drop_schema(schema)


def test_a_migrate_that_cannot_reach_its_database_says_so_in_one_line() -> None:
    result = hookstream("migrate", env={"DATABASE_URL": "postgresql://nobody:secret@127.0.0.1:9/none"})
    assert result.returncode != 0
    assert result.stderr.startswith("hookstream migrate: postgresql://nobody:***@127.0.0.1:9/none: ")
    assert "Traceback" not in result.stderr and "secret" not in result.stderr


def test_web_concurrency_one_is_a_single_process_on_sqlite(start_server: Callable[..., Server], tmp_path: Path) -> None:
    server = start_server({"WEB_CONCURRENCY": "1"}, database_url=f"sqlite:///{tmp_path / 'hookstream.db'}")
    assert httpx.get(server.url + "/readyz").status_code == 200
    assert len(re.findall(r"Started server process \[(\d+)\]", server.log())) == 1


@pytest.mark.parametrize("database", ["sqlite", pytest.param("postgres", marks=needs_postgres)])
def test_web_concurrency_runs_that_many_processes_sharing_one_log(database: str, tmp_path: Path) -> None:
    schema = f"t_{SESSION}_workers_{uuid.uuid4().hex[:6]}"
    url = f"sqlite:///{tmp_path / 'hookstream.db'}" if database == "sqlite" else postgres_test_url(schema)
    server = Server(tmp_path, {"WEB_CONCURRENCY": "3"}, database_url=url)
    try:
        server.start(timeout=40)
        deadline = time.monotonic() + 30
        while len(set(re.findall(r"Started server process \[(\d+)\]", server.log()))) < 3:
            assert time.monotonic() < deadline, server.log()
            time.sleep(0.1)
        with contextlib.closing(Api(server)) as api:
            webhook_id = api.create_webhook(api.create_account())["webhook_id"]
            account_id = api.http.get(f"/v2/webhooks/{webhook_id}", headers=api.auth).json()["data"]["account_id"]
            acknowledged = [
                event["seq"] for event in api.ingest(account_id, *[{"type": "message_received", "data": {}}] * 5)
            ]
            # Each request is a new connection, so the kernel spreads them over the processes: all see one log.
            for _ in range(12):
                with httpx.Client(base_url=server.url, headers=api.auth) as fresh:
                    page = fresh.get(f"/v2/webhooks/{webhook_id}/events", params={"afterSeq": 0}).json()
                assert [event["seq"] for event in page["events"]] == acknowledged
        started = time.monotonic()
        assert server.stop() == 0
        assert time.monotonic() - started < 10
        assert len(set(re.findall(r"Finished server process \[(\d+)\]", server.log()))) == 3
    finally:
        server.kill()
        if database == "postgres":
            drop_schema(schema)


@pytest.mark.parametrize(
    ("env", "args", "says"),
    [
        ({"WEB_CONCURRENCY": "two"}, [], "WEB_CONCURRENCY: "),
        ({}, ["--workers", "0"], "argument --workers: '0' is not a number of processes"),
    ],
)
def test_a_process_count_that_is_not_a_positive_number_is_refused_naming_it(
    tmp_path: Path, env: dict[str, str], args: list[str], says: str
) -> None:
    result = hookstream("serve", *args, env={"DATABASE_URL": f"sqlite:///{tmp_path / 'hookstream.db'}", **env})
    assert result.returncode != 0 and says in result.stderr
    assert "Traceback" not in result.stderr
